//! The gRPC door: `SubmitReferral` (same content and rules as the inbound subject) and
//! `GetReferral`, each checked against the caller's tenant and audited.
use crate::domain::contract::{self, Rejection};
use crate::handlers::{Door, Intake, Outcome};
use crate::store;
use eh_auth::{Auditor, Principal};
use eh_proto::intake::v1::intake_service_server::IntakeService;
use eh_proto::intake::v1::{
    GetReferralRequest, ReferralRecord, SubmitReferralRequest, SubmitReferralResponse,
};
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

pub struct IntakeApi {
    pub intake: Intake,
    pub auditor: Auditor,
}

impl IntakeApi {
    /// Refuses (and audits) a principal acting on another tenant's data.
    async fn check_tenant(
        &self,
        p: &Principal,
        tenant: &str,
        action: &str,
        record: &str,
    ) -> Result<(), Status> {
        self.auditor
            .check_tenant(p, tenant, action, record, "intake")
            .await
    }
}

fn invalid(rejection: &Rejection) -> Status {
    let mut details = ErrorDetails::new();
    for v in &rejection.violations {
        let field = if v.path == "/tenant" {
            "tenant".to_string()
        } else {
            contract::field_path(&v.path)
        };
        details.add_bad_request_violation(field, v.reason.clone());
    }
    Status::with_error_details(
        Code::InvalidArgument,
        format!("the referral breaks the contract: {}", rejection.summary()),
        details,
    )
}

fn internal(e: impl std::fmt::Display) -> Status {
    tracing::error!(error = %e, "intake failed");
    Status::internal("internal error")
}

#[tonic::async_trait]
impl IntakeService for IntakeApi {
    async fn submit_referral(
        &self,
        request: Request<SubmitReferralRequest>,
    ) -> Result<Response<SubmitReferralResponse>, Status> {
        let p = eh_auth::principal(&request)?;
        let req = request.into_inner();
        let tenant = req.tenant.clone();
        if !eh_platform::config::is_token(&tenant)
            || !self.intake.ctx.settings.tenants.contains_key(&tenant)
        {
            return Err(invalid(&Rejection::single(
                "/tenant",
                format!("unknown tenant {tenant:?}"),
            )));
        }
        self.check_tenant(&p, &tenant, "submit_referral", "referral:new")
            .await?;
        let parsed = match req.referral {
            None => Err(Rejection::single("", "referral is required")),
            Some(r) => {
                let doc = contract::to_json(&r);
                contract::validate(&doc).map(|typed| (doc, typed))
            }
        };
        let actor = p.actor();
        let outcome = self
            .intake
            .submit(
                &tenant,
                parsed,
                Door {
                    actor: &actor,
                    inbound: None,
                },
            )
            .await
            .map_err(internal)?;
        match outcome {
            Outcome::Stored(s) => Ok(Response::new(SubmitReferralResponse {
                referral_id: s.id,
                duplicate: false,
                received_at: s.received_at.to_rfc3339(),
            })),
            Outcome::Duplicate { id, received_at } => Ok(Response::new(SubmitReferralResponse {
                referral_id: id,
                duplicate: true,
                received_at: received_at.to_rfc3339(),
            })),
            Outcome::Rejected(r) => Err(invalid(&r)),
            Outcome::AlreadyHandled => Err(internal("inbox outcome on the gRPC door")),
        }
    }

    async fn get_referral(
        &self,
        request: Request<GetReferralRequest>,
    ) -> Result<Response<ReferralRecord>, Status> {
        let p = eh_auth::principal(&request)?;
        let req = request.into_inner();
        self.check_tenant(
            &p,
            &req.tenant,
            "get_referral",
            &format!("referral:{}", req.referral_id),
        )
        .await?;
        let stored = store::get(&self.intake.ctx.db, &req.tenant, &req.referral_id)
            .await
            .map_err(internal)?
            .ok_or_else(|| Status::not_found(format!("no referral {}", req.referral_id)))?;
        Ok(Response::new(ReferralRecord {
            referral_id: stored.id,
            tenant: stored.tenant,
            received_at: stored.received_at.to_rfc3339(),
            referral: Some(stored.referral),
            family_id: stored.family_id,
            children: stored.children,
            family_members: stored.family_members,
        }))
    }
}
