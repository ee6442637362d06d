//! The SigV4 presence check: requests must carry an `Authorization: AWS4-HMAC-SHA256 ...`
//! header whose credential scope names the right service, as AWS requires before it looks
//! at anything else.
//!
//! NB: signatures are parsed, never verified: the emulator has no secret keys, and a client
//! that signs at all (the SDKs, boto3) signs the way AWS checks.

use axum::http::HeaderMap;

/// The algorithm every current AWS SDK signs with.
const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The parsed credential scope of a request: `<key id>/<date>/<region>/<service>/aws4_request`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    /// The access key id.
    pub access_key_id: String,
    /// The signing date, `YYYYMMDD`.
    pub date: String,
    /// The signing region.
    pub region: String,
    /// The signing service (`kinesisanalytics`, `monitoring`).
    pub service: String,
}

/// Why AWS would refuse the request before routing it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header (and no presigned query): `MissingAuthenticationToken`.
    #[error("Missing Authentication Token")]
    Missing,
    /// The header is there but lacks parts: `IncompleteSignature`.
    #[error("{0}")]
    Incomplete(String),
    /// The credential scope names another service: `InvalidSignature` / `SignatureDoesNotMatch`.
    #[error("{0}")]
    WrongScope(String),
}

/// Checks the `Authorization` header of a request meant for `service` (the signing name).
pub fn check(headers: &HeaderMap, service: &str) -> Result<Credential, AuthError> {
    let Some(raw) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Err(AuthError::Missing);
    };
    let value = raw
        .to_str()
        .map_err(|_| AuthError::Incomplete("The Authorization header is not valid ASCII.".into()))?
        .trim();
    if value.is_empty() {
        return Err(AuthError::Missing);
    }
    let (algorithm, params) = value.split_once(' ').unwrap_or((value, ""));
    if algorithm != ALGORITHM {
        return Err(AuthError::Incomplete(format!(
            "Unsupported authorization algorithm '{algorithm}': only {ALGORITHM} is accepted. Authorization={value}"
        )));
    }

    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    let mut problems = Vec::new();
    for part in params.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('=') {
            Some(("Credential", v)) => credential = Some(v.trim()),
            Some(("SignedHeaders", v)) => signed_headers = Some(v.trim()),
            Some(("Signature", v)) => signature = Some(v.trim()),
            Some(_) => {}
            None => problems.push(format!("Invalid key=value pair (missing equal-sign) in Authorization header (hashed with SHA-256 and encoded with Base64): '{part}'.")),
        }
    }
    if credential.is_none_or(str::is_empty) {
        problems.push("Authorization header requires 'Credential' parameter.".into());
    }
    if signature.is_none_or(str::is_empty) {
        problems.push("Authorization header requires 'Signature' parameter.".into());
    }
    if signed_headers.is_none_or(str::is_empty) {
        problems.push("Authorization header requires 'SignedHeaders' parameter.".into());
    }
    if !headers.contains_key("x-amz-date") && !headers.contains_key(axum::http::header::DATE) {
        problems.push(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.".into(),
        );
    }
    if !problems.is_empty() {
        return Err(AuthError::Incomplete(format!(
            "{} Authorization={value}",
            problems.join(" ")
        )));
    }

    let scope = credential.unwrap_or_default();
    let parts: Vec<&str> = scope.split('/').collect();
    let [key, date, region, scope_service, terminator] = parts.as_slice() else {
        return Err(AuthError::Incomplete(format!(
            "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '{scope}'"
        )));
    };
    if key.is_empty() || date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) || region.is_empty() {
        return Err(AuthError::Incomplete(format!(
            "Malformed credential scope '{scope}'."
        )));
    }
    if *terminator != "aws4_request" {
        return Err(AuthError::WrongScope(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '{terminator}'."
        )));
    }
    if *scope_service != service {
        return Err(AuthError::WrongScope(format!(
            "Credential should be scoped to correct service: '{service}'."
        )));
    }
    Ok(Credential {
        access_key_id: (*key).to_string(),
        date: (*date).to_string(),
        region: (*region).to_string(),
        service: (*scope_service).to_string(),
    })
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(auth: Option<&str>, date: bool) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert("authorization", HeaderValue::from_str(a).unwrap());
        }
        if date {
            h.insert("x-amz-date", HeaderValue::from_static("20261126T073000Z"));
        }
        h
    }

    const GOOD: &str = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261126/eu-west-1/kinesisanalytics/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7";

    #[test]
    fn accepts_a_well_formed_header_and_parses_the_scope() {
        let c = check(&headers(Some(GOOD), true), "kinesisanalytics").unwrap();
        assert_eq!(
            c,
            Credential {
                access_key_id: "AKIDEXAMPLE".into(),
                date: "20261126".into(),
                region: "eu-west-1".into(),
                service: "kinesisanalytics".into()
            }
        );
    }

    #[test]
    fn missing_header_is_missing_token() {
        assert_eq!(check(&headers(None, true), "monitoring"), Err(AuthError::Missing));
        assert_eq!(
            check(&headers(Some(""), true), "monitoring"),
            Err(AuthError::Missing)
        );
    }

    #[test]
    fn incomplete_headers_list_every_missing_part() {
        let Err(AuthError::Incomplete(msg)) = check(
            &headers(
                Some("AWS4-HMAC-SHA256 Credential=AKID/20261126/eu-west-1/monitoring/aws4_request"),
                false,
            ),
            "monitoring",
        ) else {
            panic!("expected IncompleteSignature")
        };
        assert!(msg.contains("'Signature'"), "{msg}");
        assert!(msg.contains("'SignedHeaders'"), "{msg}");
        assert!(msg.contains("X-Amz-Date"), "{msg}");
        assert!(!msg.contains("'Credential'"), "{msg}");
    }

    #[test]
    fn other_algorithms_and_malformed_scopes_are_incomplete() {
        assert!(matches!(
            check(&headers(Some("Bearer abc"), true), "monitoring"),
            Err(AuthError::Incomplete(_))
        ));
        let short = "AWS4-HMAC-SHA256 Credential=AKID/20261126/monitoring/aws4_request, SignedHeaders=host, Signature=ab";
        assert!(matches!(
            check(&headers(Some(short), true), "monitoring"),
            Err(AuthError::Incomplete(_))
        ));
        let bad_date = "AWS4-HMAC-SHA256 Credential=AKID/2026-11-26/eu-west-1/monitoring/aws4_request, SignedHeaders=host, Signature=ab";
        assert!(matches!(
            check(&headers(Some(bad_date), true), "monitoring"),
            Err(AuthError::Incomplete(_))
        ));
    }

    #[test]
    fn a_scope_for_another_service_is_refused() {
        let Err(AuthError::WrongScope(msg)) = check(&headers(Some(GOOD), true), "monitoring") else {
            panic!("expected a scope error")
        };
        assert_eq!(
            msg,
            "Credential should be scoped to correct service: 'monitoring'."
        );
    }
}
