//! The gRPC door. Every call is admitted in one place ([`ACCESS`]): a known tenant, the caller's
//! own council (PERMISSION_DENIED, audited, for another), a team manager or an information
//! governance officer (PERMISSION_DENIED, audited, otherwise). A subject access then asks every
//! service for what it holds about the person's family (`ExportPersonData`, the caller's
//! credential forwarded, so each service's own trail names who asked), logs the request and
//! answers with every part — or names the services that could not answer.
use crate::domain::{self};
use crate::settings::SERVICES;
use crate::store;
use eh_auth::{Auditor, Principal};
use eh_bus::ServiceContext;
use eh_proto::records::v1 as pb;
use eh_proto::records::v1::records_service_server::RecordsService;
use eh_service::access::{self, Call};
use eh_service::errors::{Violation, invalid};
use std::collections::BTreeMap;
use tonic::{Request, Response, Status};

/// Who may call what (people only).
pub const ACCESS: &[(&str, &[&str])] = &[
    ("SubjectAccess", eh_service::rights::ROLES),
    ("PlaceLegalHold", eh_service::rights::ROLES),
    ("ReleaseLegalHold", eh_service::rights::ROLES),
    ("ListDestructionCertificates", eh_service::rights::ROLES),
];

fn internal(e: impl std::fmt::Display) -> Status {
    eh_service::errors::internal(crate::SERVICE, e)
}

pub struct RecordsApi {
    pub ctx: ServiceContext,
    pub auditor: Auditor,
    /// Each service's gRPC channel (connected when first asked).
    pub channels: BTreeMap<&'static str, tonic::transport::Channel>,
}

/// `intake` → `/earlyhelp.intake.v1.IntakeService/ExportPersonData`.
fn export_path(service: &str) -> String {
    let mut cap = service.to_string();
    if let Some(first) = cap.get_mut(..1) {
        first.make_ascii_uppercase();
    }
    format!("/earlyhelp.{service}.v1.{cap}Service/ExportPersonData")
}

async fn ask(
    channel: tonic::transport::Channel,
    service: &str,
    req: pb::ExportPersonDataRequest,
    credential: Option<tonic::metadata::AsciiMetadataValue>,
) -> Result<pb::PersonDataExport, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let mut request = Request::new(req);
    if let Some(c) = credential {
        request.metadata_mut().insert("authorization", c);
    }
    let path = tonic::codegen::http::uri::PathAndQuery::try_from(export_path(service))
        .map_err(|e| Status::internal(e.to_string()))?;
    let codec =
        tonic_prost::ProstCodec::<pb::ExportPersonDataRequest, pb::PersonDataExport>::default();
    grpc.unary(request, path, codec)
        .await
        .map(Response::into_inner)
}

fn hold_pb(tenant: &str, h: &store::Hold) -> pb::LegalHold {
    pb::LegalHold {
        hold_id: h.id.clone(),
        tenant: tenant.into(),
        family_id: h.family_id.clone(),
        reason: h.reason.clone(),
        placed_by: h.placed_by.clone(),
        placed_at: h.placed_at.to_rfc3339(),
        released_by: h.released_by.clone().unwrap_or_default(),
        released_at: h.released_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
        release_reason: h.release_reason.clone().unwrap_or_default(),
    }
}

impl RecordsApi {
    async fn admit(
        &self,
        p: &Principal,
        tenant: &str,
        method: &str,
        record: &str,
    ) -> Result<(), Status> {
        access::admit(
            &self.auditor,
            &self.ctx.settings,
            ACCESS,
            &Call {
                principal: p,
                tenant,
                method,
                record,
                service: crate::SERVICE,
            },
        )
        .await
    }
}

#[tonic::async_trait]
impl RecordsService for RecordsApi {
    async fn subject_access(
        &self,
        request: Request<pb::SubjectAccessRequest>,
    ) -> Result<Response<pb::SubjectAccessReport>, Status> {
        let p = eh_auth::principal(&request)?;
        let credential = request.metadata().get("authorization").cloned();
        let req = request.into_inner();
        let tenant = req.tenant.as_str();
        self.admit(
            &p,
            tenant,
            "SubjectAccess",
            &format!("person:{}", req.person_id),
        )
        .await?;
        let mut violations = Vec::new();
        if req.person_id.trim().is_empty() {
            violations.push(Violation::new("person_id", "required"));
        }
        if !["", "json", "html"].contains(&req.format.as_str()) {
            violations.push(Violation::new("format", "json or html"));
        }
        if !violations.is_empty() {
            return Err(invalid("the request is invalid", &violations));
        }
        // The person's families and every id that makes them up, as records knows them.
        let txn = eh_store::begin_scoped(&self.ctx.db, tenant)
            .await
            .map_err(internal)?;
        let ids = async {
            let mut all = eh_service::rights::Ids {
                tenant: tenant.into(),
                ..Default::default()
            };
            for f in store::families_of(&txn, tenant, &req.person_id).await? {
                let group = store::family_group(&txn, tenant, &f).await?;
                let ids = store::ids_of(&txn, tenant, &group).await?;
                for (to, from) in [
                    (&mut all.family, ids.family),
                    (&mut all.person, ids.person),
                    (&mut all.referral, ids.referral),
                    (&mut all.case, ids.case),
                ] {
                    for id in from {
                        if !to.contains(&id) {
                            to.push(id);
                        }
                    }
                }
            }
            Ok::<_, sea_orm::DbErr>(all)
        }
        .await;
        eh_store::end_read(txn).await.map_err(internal)?;
        let ids = ids.map_err(internal)?;
        if ids.family.is_empty() {
            return Err(Status::not_found("no such person"));
        }
        let ask_req = pb::ExportPersonDataRequest {
            tenant: tenant.into(),
            person_id: req.person_id.clone(),
            person_ids: ids.person.clone(),
            family_ids: ids.family.clone(),
            referral_ids: ids.referral.clone(),
            case_ids: ids.case.clone(),
        };
        let answers = futures::future::join_all(SERVICES.iter().map(|s| {
            let channel = self.channels.get(s).cloned();
            let req = ask_req.clone();
            let credential = credential.clone();
            async move {
                match channel {
                    None => (*s, Err(Status::unavailable("no channel"))),
                    Some(c) => (*s, ask(c, s, req, credential).await),
                }
            }
        }))
        .await;
        let mut report = pb::SubjectAccessReport {
            request_id: uuid::Uuid::now_v7().to_string(),
            tenant: tenant.into(),
            person_id: req.person_id.clone(),
            produced_at: self.ctx.clock.now().to_rfc3339(),
            ..Default::default()
        };
        for (service, answer) in answers {
            match answer {
                Ok(part) => report.services.push(part),
                Err(e) => {
                    tracing::warn!(tenant, service, code = ?e.code(), "a service did not answer a subject access");
                    report.incomplete.push(format!("{service}:{:?}", e.code()));
                }
            }
        }
        let format = if req.format.is_empty() {
            "json"
        } else {
            req.format.as_str()
        };
        let txn = eh_store::begin_scoped(&self.ctx.db, tenant)
            .await
            .map_err(internal)?;
        store::log_sar(
            &txn,
            tenant,
            &report.request_id,
            &req.person_id,
            &p.actor(),
            self.ctx.clock.now(),
            format,
            &report.incomplete,
        )
        .await
        .map_err(internal)?;
        eh_store::commit(txn).await.map_err(internal)?;
        if format == "html" {
            report.document = domain::html(&report);
        }
        Ok(Response::new(report))
    }

    async fn place_legal_hold(
        &self,
        request: Request<pb::PlaceLegalHoldRequest>,
    ) -> Result<Response<pb::LegalHold>, Status> {
        let p = eh_auth::principal(&request)?;
        let req = request.into_inner();
        let tenant = req.tenant.as_str();
        self.admit(
            &p,
            tenant,
            "PlaceLegalHold",
            &format!("family:{}", req.family_id),
        )
        .await?;
        let mut violations = Vec::new();
        if req.family_id.trim().is_empty() {
            violations.push(Violation::new("family_id", "required"));
        }
        if req.reason.trim().is_empty() {
            violations.push(Violation::new(
                "reason",
                "required: why the records must be kept",
            ));
        }
        if !violations.is_empty() {
            return Err(invalid("the request is invalid", &violations));
        }
        let now = self.ctx.clock.now();
        let txn = eh_store::begin_scoped(&self.ctx.db, tenant)
            .await
            .map_err(internal)?;
        let family = if store::family_known(&txn, tenant, &req.family_id)
            .await
            .map_err(internal)?
        {
            Some(req.family_id.clone())
        } else {
            store::families_of(&txn, tenant, &req.family_id)
                .await
                .map_err(internal)?
                .into_iter()
                .next()
        };
        let Some(family) = family else {
            eh_store::end_read(txn).await.map_err(internal)?;
            return Err(Status::not_found("no such family or person"));
        };
        let hold = store::Hold {
            id: uuid::Uuid::now_v7().to_string(),
            family_id: family,
            reason: req.reason.trim().to_string(),
            placed_by: p.actor(),
            placed_at: now,
            released_by: None,
            released_at: None,
            release_reason: None,
        };
        store::place_hold(&txn, tenant, &hold)
            .await
            .map_err(internal)?;
        eh_store::commit(txn).await.map_err(internal)?;
        Ok(Response::new(hold_pb(tenant, &hold)))
    }

    async fn release_legal_hold(
        &self,
        request: Request<pb::ReleaseLegalHoldRequest>,
    ) -> Result<Response<pb::LegalHold>, Status> {
        let p = eh_auth::principal(&request)?;
        let req = request.into_inner();
        let tenant = req.tenant.as_str();
        self.admit(
            &p,
            tenant,
            "ReleaseLegalHold",
            &format!("hold:{}", req.hold_id),
        )
        .await?;
        let mut violations = Vec::new();
        if req.hold_id.trim().is_empty() {
            violations.push(Violation::new("hold_id", "required"));
        }
        if req.reason.trim().is_empty() {
            violations.push(Violation::new("reason", "required: why the hold ends"));
        }
        if !violations.is_empty() {
            return Err(invalid("the request is invalid", &violations));
        }
        let txn = eh_store::begin_scoped(&self.ctx.db, tenant)
            .await
            .map_err(internal)?;
        let released = store::release_hold(
            &txn,
            tenant,
            &req.hold_id,
            &p.actor(),
            self.ctx.clock.now(),
            req.reason.trim(),
        )
        .await
        .map_err(internal)?;
        let hold = store::hold(&txn, tenant, &req.hold_id)
            .await
            .map_err(internal)?;
        eh_store::commit(txn).await.map_err(internal)?;
        match (released, hold) {
            (true, Some(h)) => Ok(Response::new(hold_pb(tenant, &h))),
            (false, Some(_)) => Err(Status::failed_precondition("the hold is already released")),
            _ => Err(Status::not_found("no such hold")),
        }
    }

    async fn list_destruction_certificates(
        &self,
        request: Request<pb::ListDestructionCertificatesRequest>,
    ) -> Result<Response<pb::ListDestructionCertificatesResponse>, Status> {
        let p = eh_auth::principal(&request)?;
        let req = request.into_inner();
        let tenant = req.tenant.as_str();
        self.admit(
            &p,
            tenant,
            "ListDestructionCertificates",
            "destruction_certificates",
        )
        .await?;
        let txn = eh_store::begin_scoped(&self.ctx.db, tenant)
            .await
            .map_err(internal)?;
        let certificates = store::certificates(&txn, tenant, SERVICES).await;
        eh_store::end_read(txn).await.map_err(internal)?;
        Ok(Response::new(pb::ListDestructionCertificatesResponse {
            certificates: certificates.map_err(internal)?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_service_is_asked_at_its_own_path() {
        assert_eq!(
            export_path("intake"),
            "/earlyhelp.intake.v1.IntakeService/ExportPersonData"
        );
        assert_eq!(
            export_path("notifications"),
            "/earlyhelp.notifications.v1.NotificationsService/ExportPersonData"
        );
    }

    #[test]
    fn every_method_is_for_team_managers_and_information_governance() {
        for (m, _) in ACCESS {
            assert_eq!(
                access::roles_for(ACCESS, m),
                ["team_manager", "information_governance"]
            );
        }
    }
}
