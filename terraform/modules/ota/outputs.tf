output "bucket" {
  description = "Artifacts bucket: battery-twin model publish --bucket, and the SageMaker channels."
  value       = aws_s3_bucket.artifacts.bucket
}

output "presign_role_arn" {
  description = "Role IoT Jobs presigns model URLs with: battery-twin model publish --presign-role-arn."
  value       = aws_iam_role.presign.arn
}

output "thing_group" {
  description = "Thing group for rollouts: battery-twin model publish --target."
  value       = aws_iot_thing_group.rollout.name
}

output "sagemaker_role_arn" {
  description = "Execution role for the SageMaker training jobs (cloud/sagemaker entry points)."
  value       = aws_iam_role.sagemaker.arn
}

output "sagemaker_channels" {
  description = "S3 URIs of the training job's input channel and output path (docs/ota.md)."
  value = {
    training = "s3://${aws_s3_bucket.artifacts.bucket}/${local.training_prefix}"
    output   = "s3://${aws_s3_bucket.artifacts.bucket}/${local.output_prefix}"
  }
}
