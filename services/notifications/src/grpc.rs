//! `ListMessages`: what was sent about a record (template, channel, delivery status; never an
//! address), for the caller's own council, admitted by [`ACCESS`] and audited.
use crate::store;
use eh_auth::Auditor;
use eh_proto::notifications::v1::notifications_service_server::NotificationsService;
use eh_proto::notifications::v1::{ListMessagesRequest, ListMessagesResponse, MessageRecord};
use sea_orm::DatabaseConnection;
use tonic::{Request, Response, Status};

/// Who may call what ([`eh_service::access`]; a method missing from the table is refused): the
/// council's staff who follow up what the family and the referrer were told.
pub const ACCESS: &[(&str, &[&str])] = &[(
    "ListMessages",
    &[
        "front_door",
        "team_manager",
        "practitioner",
        "business_support",
    ],
)];

pub struct NotificationsApi {
    pub db: DatabaseConnection,
    pub auditor: Auditor,
    pub settings: std::sync::Arc<eh_platform::Settings>,
}

#[tonic::async_trait]
impl NotificationsService for NotificationsApi {
    async fn list_messages(
        &self,
        request: Request<ListMessagesRequest>,
    ) -> Result<Response<ListMessagesResponse>, Status> {
        let p = eh_auth::principal(&request)?;
        let req = request.into_inner();
        eh_service::access::admit(
            &self.auditor,
            &self.settings,
            ACCESS,
            &eh_service::access::Call {
                principal: &p,
                tenant: &req.tenant,
                method: "ListMessages",
                record: &format!("related:{}", req.related_id),
                service: "notifications",
            },
        )
        .await?;
        let failed = |e: sea_orm::DbErr| {
            tracing::error!(error = %e, "list messages failed");
            Status::internal("internal error")
        };
        // Held to the caller's tenant by row-level security too (a no-op on SQLite).
        let txn = eh_store::begin_scoped(&self.db, p.data_scope(&req.tenant))
            .await
            .map_err(failed)?;
        let rows = store::for_related(&txn, &req.tenant, &req.related_id)
            .await
            .map_err(failed)?;
        eh_store::end_read(txn).await.map_err(failed)?;
        Ok(Response::new(ListMessagesResponse {
            messages: rows
                .into_iter()
                .map(|m| MessageRecord {
                    message_id: m.id,
                    template: m.template,
                    channel: m.channel,
                    status: m.status,
                    attempts: m.attempts.max(0) as u32,
                    last_error: m.last_error.unwrap_or_default(),
                    created_at: m.created_at.to_rfc3339(),
                    sent_at: m.sent_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
                    related_id: m.related_id,
                })
                .collect(),
        }))
    }
}
