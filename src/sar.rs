//! `earlyhelp sar`: a subject access request to records' `SubjectAccess`, as the person whose
//! token is given (a team manager or information governance officer of the council), printed as
//! JSON or as the readable HTML document.
use anyhow::Context;
use eh_proto::records::v1::SubjectAccessRequest;
use eh_proto::records::v1::records_service_client::RecordsServiceClient;
use std::time::Duration;

/// What `earlyhelp sar` prints for `person` of `tenant`: the report as JSON (`json`) or its HTML
/// document (`html`).
///
/// # Errors
/// Records cannot be reached, or refuses (the gRPC status: PERMISSION_DENIED for a caller who
/// may not ask, NOT_FOUND for a person records does not know).
pub async fn request(
    grpc: &str,
    token: &str,
    tenant: &str,
    person: &str,
    format: &str,
) -> anyhow::Result<String> {
    anyhow::ensure!(["json", "html"].contains(&format), "--format: json or html");
    let channel = eh_platform::net::endpoint(grpc.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(60))
        .connect()
        .await
        .with_context(|| format!("connect {grpc}"))?;
    let mut client = RecordsServiceClient::new(channel);
    let mut req = tonic::Request::new(SubjectAccessRequest {
        tenant: tenant.into(),
        person_id: person.into(),
        format: format.into(),
    });
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}")
            .parse()
            .context("the token is not ASCII")?,
    );
    let report = client
        .subject_access(req)
        .await
        .map_err(|s| anyhow::anyhow!("subject access refused: {:?}: {}", s.code(), s.message()))?
        .into_inner();
    Ok(if format == "html" {
        report.document
    } else {
        serde_json::to_string_pretty(&report)? + "\n"
    })
}
