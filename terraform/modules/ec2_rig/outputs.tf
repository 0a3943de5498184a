output "instance_id" {
  description = "EC2 instance of the simulated rig (connect with `aws ssm start-session --target <id>`)."
  value       = aws_instance.rig.id
}

output "csr_pem" {
  description = "CSR the instance posted, or null before it has (feed it to the iot module's csrs)."
  value       = startswith(local.csr_value, "-----BEGIN CERTIFICATE REQUEST-----") ? local.csr_value : null
}

output "csr_parameter" {
  description = "SSM parameter the instance posts its CSR to."
  value       = local.csr_param
}

output "certificate_parameter" {
  description = "SSM parameter the instance reads its certificate from."
  value       = local.cert_param
}
