//! Whose account: the partition of a region, and the controller's own AWS account (STS
//! `GetCallerIdentity`, once, or the `--aws-account-id` override).
//!
//! The account matters to tenancy: an allow-list entry names an application by ARN
//! (partition, region, account, name), so before any call about a budget's application the
//! controller must know which account the budget reaches it in: its role's, or the
//! controller's own. `GetCallerIdentity` needs no IAM permission (AWS: "No permissions are
//! required to perform this operation", even under an explicit deny), so the example IAM
//! policies grant nothing for it.

use tracing::info;

use super::{AwsClients, AwsError, stats::AwsOperation};

/// The AWS partitions, as ARNs spell them.
pub const PARTITIONS: [&str; 7] = [
    "aws",
    "aws-cn",
    "aws-us-gov",
    "aws-iso",
    "aws-iso-b",
    "aws-iso-e",
    "aws-iso-f",
];

/// The partition of `region` (`cn-north-1` → `aws-cn`, `us-gov-west-1` → `aws-us-gov`,
/// every commercial region → `aws`): the partition of every ARN in it.
pub fn partition_of(region: &str) -> &'static str {
    const PREFIXES: [(&str, &str); 6] = [
        ("cn-", "aws-cn"),
        ("us-gov-", "aws-us-gov"),
        ("us-isob-", "aws-iso-b"),
        ("us-isof-", "aws-iso-f"),
        ("eu-isoe-", "aws-iso-e"),
        ("us-iso-", "aws-iso"),
    ];
    PREFIXES
        .iter()
        .find(|(prefix, _)| region.starts_with(prefix))
        .map_or("aws", |(_, partition)| partition)
}

/// Whether `account` is an AWS account id: twelve digits.
pub fn is_account_id(account: &str) -> bool {
    account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())
}

impl AwsClients {
    /// The account of the controller's own credentials: the `--aws-account-id` override,
    /// else STS `GetCallerIdentity` in the default region (through the clients' endpoint
    /// override, retry mode and timeouts), called once and remembered. A failure is not
    /// remembered: the next caller tries again.
    pub async fn own_account(&self) -> Result<String, AwsError> {
        self.own_account
            .get_or_try_init(|| self.caller_account())
            .await
            .cloned()
    }

    async fn caller_account(&self) -> Result<String, AwsError> {
        let op = AwsOperation::GetCallerIdentity;
        let config = self
            .base
            .to_builder()
            .region(aws_config::Region::new(self.default_region().to_owned()))
            .build();
        let client = aws_sdk_sts::Client::new(&config);
        let stats = self.stats();
        stats.record_call(op);
        let result = client
            .get_caller_identity()
            .customize()
            .interceptor(self.attempt_counter(op))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(op, e))
            .and_then(|out| match out.account() {
                Some(account) if is_account_id(account) => Ok(account.to_owned()),
                other => Err(AwsError::UnexpectedResponse(format!(
                    "GetCallerIdentity: the account is {other:?}, not twelve digits"
                ))),
            });
        match &result {
            Ok(account) => info!(%account, "the controller's own AWS account (STS GetCallerIdentity)"),
            Err(e) => stats.record_error(e),
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_map_to_their_partition() {
        assert_eq!(partition_of("eu-west-1"), "aws");
        assert_eq!(partition_of("us-east-1"), "aws");
        assert_eq!(partition_of("cn-northwest-1"), "aws-cn");
        assert_eq!(partition_of("us-gov-west-1"), "aws-us-gov");
        assert_eq!(partition_of("us-iso-east-1"), "aws-iso");
        assert_eq!(partition_of("us-isob-east-1"), "aws-iso-b");
        for region in [
            "eu-west-1",
            "cn-north-1",
            "us-gov-east-1",
            "us-isof-south-1",
            "eu-isoe-west-1",
        ] {
            assert!(PARTITIONS.contains(&partition_of(region)), "{region}");
        }
    }

    #[test]
    fn account_ids_are_twelve_digits() {
        assert!(is_account_id("111122223333"));
        assert!(!is_account_id("11112222333"));
        assert!(!is_account_id("1111222233334"));
        assert!(!is_account_id("11112222333x"));
    }
}
