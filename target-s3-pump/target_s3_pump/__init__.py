"""target-s3-pump: GitLab's Data Pump (pumps.yml -> S3) as a singer-sdk target."""
