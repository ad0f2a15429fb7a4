"""The pre-function and post-function plugins: Kong's Serverless Functions."""
