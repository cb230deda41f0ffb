//! The gateway's gRPC door: only its part in the family's data rights (records asks for a
//! subject access, forwarding the caller's credential; admitted by [`ACCESS`] and audited, like
//! every service's `ExportPersonData`). Its public API is HTTP ([`crate::api`]).
use eh_auth::Auditor;
use eh_proto::gateway::v1::gateway_service_server::GatewayService;
use eh_proto::records::v1::{ExportPersonDataRequest, PersonDataExport};
use tonic::{Request, Response, Status};

/// Who may call what ([`eh_service::access`]): subject access only (records asks, forwarding
/// the caller's credential).
pub const ACCESS: &[(&str, &[&str])] = &[(eh_service::rights::METHOD, eh_service::rights::ROLES)];

/// The gateway's gRPC service.
pub struct GatewayApi {
    pub db: sea_orm::DatabaseConnection,
    pub auditor: Auditor,
    pub settings: std::sync::Arc<eh_platform::Settings>,
}

#[tonic::async_trait]
impl GatewayService for GatewayApi {
    async fn export_person_data(
        &self,
        request: Request<ExportPersonDataRequest>,
    ) -> Result<Response<PersonDataExport>, Status> {
        eh_service::rights::export_person_data(
            crate::SERVICE,
            &self.db,
            &self.settings,
            &self.auditor,
            ACCESS,
            crate::rights::HOLDINGS,
            request,
        )
        .await
    }
}
