//! The gRPC door. Every call is admitted in one place ([`ACCESS`]: method → the roles that may
//! call it): a known tenant, the caller's own council (PERMISSION_DENIED, audited, for another), a
//! team manager (PERMISSION_DENIED, audited, otherwise). Then the period is checked
//! (INVALID_ARGUMENT with a violation per field, never quoting the value), the council's facts are
//! read in its row-level-security scope and the domain computes the figures.
//!
//! Only team managers: the figures are aggregates, but a small council's slice (one locality, one
//! need, one month) can come down to a family or two, so they are for the people accountable for
//! the service, not every practitioner or the front door.
use crate::domain::{self, Council, Figure, Period, Report};
use eh_auth::{Auditor, Principal};
use eh_bus::ServiceContext;
use eh_proto::reporting::v1 as pb;
use eh_proto::reporting::v1::reporting_service_server::ReportingService;
use eh_service::errors::{Violation, invalid};
use std::collections::BTreeMap;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Who may call what (people only).
pub const ACCESS: &[(&str, &[&str])] = &[
    // Subject access (records asks, forwarding the caller's credential).
    (eh_service::rights::METHOD, eh_service::rights::ROLES),
    ("GetReport", &["team_manager"]),
    ("ExportReportCsv", &["team_manager"]),
];

fn internal(e: impl std::fmt::Display) -> Status {
    eh_service::errors::internal(crate::SERVICE, e)
}

pub struct ReportingApi {
    pub ctx: ServiceContext,
    pub auditor: Auditor,
    pub councils: Arc<BTreeMap<String, Council>>,
}

fn figure_pb(f: &Figure) -> pb::Figure {
    pb::Figure {
        measure: f.measure.into(),
        dimension: f.dimension.clone(),
        kind: f.kind.as_str().into(),
        value: f.value,
        numerator: f.numerator,
        denominator: f.denominator,
        available: f.unavailable.is_none(),
        unavailable_reason: f.unavailable.unwrap_or_default().into(),
    }
}

fn report_pb(tenant: &str, r: &Report) -> pb::Report {
    let figures = |fs: &[Figure]| fs.iter().map(figure_pb).collect();
    pb::Report {
        tenant: tenant.into(),
        from: r.period.from.to_string(),
        to: r.period.to.to_string(),
        waiting_list_as_at: r.waiting_list_as_at.to_rfc3339(),
        timeliness: figures(&r.timeliness),
        demand: figures(&r.demand),
        outcomes: figures(&r.outcomes),
        waiting_list: figures(&r.waiting_list),
    }
}

impl ReportingApi {
    /// Admits the call, checks the period and computes the council's report.
    async fn report(
        &self,
        p: &Principal,
        req: &pb::GetReportRequest,
        method: &str,
    ) -> Result<Report, Status> {
        let tenant = req.tenant.as_str();
        eh_service::access::admit(
            &self.auditor,
            &self.ctx.settings,
            ACCESS,
            &eh_service::access::Call {
                principal: p,
                tenant,
                method,
                record: "report",
                service: crate::SERVICE,
            },
        )
        .await?;
        let period = Period::parse(&req.from, &req.to).map_err(|vs| {
            let vs: Vec<Violation> = vs
                .into_iter()
                .map(|v| Violation::new(v.field, v.reason))
                .collect();
            invalid("the period is invalid", &vs)
        })?;
        let council = self
            .councils
            .get(tenant)
            .ok_or_else(|| internal(format!("no rules for council {tenant}")))?;
        let txn = eh_store::begin_scoped(&self.ctx.db, tenant)
            .await
            .map_err(internal)?;
        let facts = crate::store::facts(&txn, tenant).await;
        eh_store::end_read(txn).await.map_err(internal)?;
        let facts = facts.map_err(internal)?;
        Ok(domain::report(
            &facts,
            &period,
            council,
            self.ctx.clock.now(),
        ))
    }
}

#[tonic::async_trait]
impl ReportingService for ReportingApi {
    async fn export_person_data(
        &self,
        request: tonic::Request<eh_proto::records::v1::ExportPersonDataRequest>,
    ) -> Result<tonic::Response<eh_proto::records::v1::PersonDataExport>, tonic::Status> {
        eh_service::rights::export_person_data(
            crate::SERVICE,
            &self.ctx.db,
            &self.ctx.settings,
            &self.auditor,
            ACCESS,
            crate::rights::HOLDINGS,
            request,
        )
        .await
    }

    async fn get_report(
        &self,
        request: Request<pb::GetReportRequest>,
    ) -> Result<Response<pb::Report>, Status> {
        let p = eh_auth::principal(&request)?;
        let req = request.into_inner();
        let r = self.report(&p, &req, "GetReport").await?;
        Ok(Response::new(report_pb(&req.tenant, &r)))
    }

    async fn export_report_csv(
        &self,
        request: Request<pb::GetReportRequest>,
    ) -> Result<Response<pb::ReportCsv>, Status> {
        let p = eh_auth::principal(&request)?;
        let req = request.into_inner();
        let r = self.report(&p, &req, "ExportReportCsv").await?;
        Ok(Response::new(pb::ReportCsv {
            csv: domain::csv::render(&r),
            filename: format!(
                "earlyhelp-{}-{}-{}.csv",
                req.tenant, r.period.from, r.period.to
            ),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_is_for_team_managers_only() {
        for m in ["GetReport", "ExportReportCsv"] {
            assert_eq!(eh_service::access::roles_for(ACCESS, m), ["team_manager"]);
        }
        assert!(eh_service::access::roles_for(ACCESS, "DeleteReport").is_empty());
    }

    #[test]
    fn every_reporting_subscription_of_the_catalogue_has_a_feed() {
        let mut fed: Vec<&str> = crate::handlers::Feed::ALL
            .iter()
            .map(|(_, s)| s.consumer)
            .collect();
        let mut listed: Vec<&str> = eh_proto::catalogue::SUBSCRIPTIONS
            .iter()
            .filter(|s| s.service == crate::SERVICE)
            // The family's data rights' consumer is rights.rs's, not a feed.
            .filter(|s| s.consumer != eh_proto::catalogue::REPORTING_DESTRUCTION_ORDERED.consumer)
            .map(|s| s.consumer)
            .collect();
        fed.sort_unstable();
        listed.sort_unstable();
        assert_eq!(fed, listed);
    }
}
