//! Text messages through SNS: one `Publish` straight to the phone number (no topic).

use aws_sdk_sns::types::MessageAttributeValue;
use loyalty_domain::passcode::SmsSender;
use loyalty_domain::phone::PhoneNumber;
use loyalty_domain::InfraError;

use crate::aws::classify_sns;

#[derive(Debug, Clone)]
pub struct SnsSms {
    client: aws_sdk_sns::Client,
}

impl SnsSms {
    pub fn new(client: aws_sdk_sns::Client) -> Self {
        Self { client }
    }
}

impl SmsSender for SnsSms {
    async fn send(&self, phone: &PhoneNumber, text: &str) -> Result<(), InfraError> {
        // Transactional: SNS delivers it ahead of marketing and past quiet hours.
        let kind = MessageAttributeValue::builder()
            .data_type("String")
            .string_value("Transactional")
            .build()
            .map_err(|e| InfraError::permanent("build SMS attribute", e.to_string()))?;
        let out = self
            .client
            .publish()
            .phone_number(phone.as_e164())
            .message(text)
            .message_attributes("AWS.SNS.SMS.SMSType", kind)
            .send()
            .await
            .map_err(|e| classify_sns("publish SMS", e))?;
        // The phone prints as its last digits; the text holds the code and is never logged.
        tracing::info!(%phone, message_id = out.message_id().unwrap_or(""), "SMS sent");
        Ok(())
    }
}
