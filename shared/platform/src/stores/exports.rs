//! The exports bucket over S3: [`ExportStore`] for the worker's CSV and QR sheets, and
//! [`ExportLinks`] (presigned GET URLs) for the admin's downloads.

use std::time::{Duration, SystemTime};

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use chrono::{DateTime, Utc};
use loyalty_domain::batch::{ExportLink, ExportLinks, ExportStore};
use loyalty_domain::InfraError;

use crate::aws::classify_s3;

#[derive(Clone)]
pub struct S3Exports {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Exports {
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }
}

impl ExportStore for S3Exports {
    async fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<(), InfraError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| classify_s3("export to S3", e))?;
        Ok(())
    }
}

/// Signed locally (no request): the link is valid from `now`, so the function's clock, not
/// the SDK's, dates it.
impl ExportLinks for S3Exports {
    async fn link(
        &self,
        key: &str,
        now: DateTime<Utc>,
        valid_for: chrono::Duration,
    ) -> Result<ExportLink, InfraError> {
        let bad = |e: String| InfraError::permanent("sign export link", e);
        let start = SystemTime::UNIX_EPOCH
            + Duration::from_secs(u64::try_from(now.timestamp()).map_err(|e| bad(e.to_string()))?);
        let config = PresigningConfig::builder()
            .start_time(start)
            .expires_in(valid_for.to_std().map_err(|e| bad(e.to_string()))?)
            .build()
            .map_err(|e| bad(e.to_string()))?;
        let signed = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(config)
            .await
            .map_err(|e| classify_s3("sign export link", e))?;
        Ok(ExportLink {
            url: signed.uri().to_string(),
            expires_at: now + valid_for,
        })
    }
}
