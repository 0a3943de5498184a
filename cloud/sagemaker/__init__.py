"""SageMaker script-mode entry points (also runnable locally); see README.md."""
