//! `ListMessages`: what was sent about a record (template, channel, delivery status; never an
//! address), for the caller's own council, admitted by [`ACCESS`] and audited. `ListTasks` and
//! `ResolveTask`: the team manager's tasks, one per message that failed for good.
use crate::store;
use eh_auth::Auditor;
use eh_proto::notifications::v1::notifications_service_server::NotificationsService;
use eh_proto::notifications::v1::{
    ListMessagesRequest, ListMessagesResponse, ListTasksRequest, ListTasksResponse, MessageRecord,
    ResolveTaskRequest, Task,
};
use eh_service::errors::{Violation, invalid};
use sea_orm::DatabaseConnection;
use tonic::{Request, Response, Status};

/// Who may call what ([`eh_service::access`]; a method missing from the table is refused): the
/// council's staff who follow up what the family and the referrer were told.
pub const ACCESS: &[(&str, &[&str])] = &[
    // Subject access (records asks, forwarding the caller's credential).
    (eh_service::rights::METHOD, eh_service::rights::ROLES),
    (
        "ListMessages",
        &[
            "front_door",
            "team_manager",
            "practitioner",
            "business_support",
        ],
    ),
    ("ListTasks", &["team_manager"]),
    ("ResolveTask", &["team_manager"]),
];

/// The most tasks one `ListTasks` returns.
const TASK_PAGE: u64 = 500;

fn task_pb(t: store::TaskRow) -> Task {
    Task {
        task_id: t.id,
        kind: t.kind,
        message_id: t.message_id,
        related_id: t.related_id,
        template: t.template,
        created_at: t.created_at.to_rfc3339(),
        status: t.status,
        resolved_by: t.resolved_by,
        resolved_at: t.resolved_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
        note: t.note,
    }
}

fn failed(e: sea_orm::DbErr) -> Status {
    tracing::error!(error = %e, "notifications: a read or write failed");
    Status::internal("internal error")
}

impl NotificationsApi {
    async fn admit(
        &self,
        p: &eh_auth::Principal,
        tenant: &str,
        method: &str,
        record: &str,
    ) -> Result<(), Status> {
        eh_service::access::admit(
            &self.auditor,
            &self.settings,
            ACCESS,
            &eh_service::access::Call {
                principal: p,
                tenant,
                method,
                record,
                service: "notifications",
            },
        )
        .await
    }
}

pub struct NotificationsApi {
    pub db: DatabaseConnection,
    pub auditor: Auditor,
    pub settings: std::sync::Arc<eh_platform::Settings>,
}

#[tonic::async_trait]
impl NotificationsService for NotificationsApi {
    async fn export_person_data(
        &self,
        request: tonic::Request<eh_proto::records::v1::ExportPersonDataRequest>,
    ) -> Result<tonic::Response<eh_proto::records::v1::PersonDataExport>, tonic::Status> {
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

    async fn list_messages(
        &self,
        request: Request<ListMessagesRequest>,
    ) -> Result<Response<ListMessagesResponse>, Status> {
        let p = eh_auth::principal(&request)?;
        let req = request.into_inner();
        let record = format!("related:{}", req.related_id);
        let list = async {
            // Held to the caller's tenant by row-level security too (a no-op on SQLite).
            let txn = eh_store::begin_scoped(&self.db, p.data_scope(&req.tenant))
                .await
                .map_err(failed)?;
            let rows = store::for_related(&txn, &req.tenant, &req.related_id)
                .await
                .map_err(failed)?;
            eh_store::end_read(txn).await.map_err(failed)?;
            Ok(ListMessagesResponse {
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
            })
        };
        let listed = eh_service::access::admit_list(
            &self.auditor,
            &self.settings,
            ACCESS,
            &eh_service::access::Call {
                principal: &p,
                tenant: &req.tenant,
                method: "ListMessages",
                record: &record,
                service: "notifications",
            },
            list,
            |r: &ListMessagesResponse| {
                r.messages
                    .iter()
                    .map(|m| format!("message:{}", m.message_id))
                    .collect()
            },
        )
        .await?;
        Ok(Response::new(listed))
    }

    async fn list_tasks(
        &self,
        request: Request<ListTasksRequest>,
    ) -> Result<Response<ListTasksResponse>, Status> {
        let p = eh_auth::principal(&request)?;
        let req = request.into_inner();
        let record = format!("tasks:{}", req.status);
        let list = async {
            let status = req.status.trim();
            if !["", "open", "resolved"].contains(&status) {
                return Err(invalid(
                    "the request is invalid",
                    &[Violation::new("status", "must be open, resolved or empty")],
                ));
            }
            let txn = eh_store::begin_scoped(&self.db, p.data_scope(&req.tenant))
                .await
                .map_err(failed)?;
            let rows = store::tasks(&txn, &req.tenant, status, TASK_PAGE)
                .await
                .map_err(failed)?;
            eh_store::end_read(txn).await.map_err(failed)?;
            Ok(ListTasksResponse {
                tasks: rows.into_iter().map(task_pb).collect(),
            })
        };
        let listed = eh_service::access::admit_list(
            &self.auditor,
            &self.settings,
            ACCESS,
            &eh_service::access::Call {
                principal: &p,
                tenant: &req.tenant,
                method: "ListTasks",
                record: &record,
                service: "notifications",
            },
            list,
            |r: &ListTasksResponse| {
                r.tasks
                    .iter()
                    .map(|t| format!("task:{}", t.task_id))
                    .collect()
            },
        )
        .await?;
        Ok(Response::new(listed))
    }

    async fn resolve_task(
        &self,
        request: Request<ResolveTaskRequest>,
    ) -> Result<Response<Task>, Status> {
        let p = eh_auth::principal(&request)?;
        let req = request.into_inner();
        self.admit(
            &p,
            &req.tenant,
            "ResolveTask",
            &format!("task:{}", req.task_id),
        )
        .await?;
        let mut v = Vec::new();
        if req.task_id.trim().is_empty() {
            v.push(Violation::new("task_id", "is required"));
        }
        let note = req.note.trim();
        let n = note.chars().count();
        if n == 0 || n > 1000 {
            v.push(Violation::new(
                "note",
                "say what was done, in at most 1000 characters",
            ));
        }
        if !v.is_empty() {
            return Err(invalid("the request is invalid", &v));
        }
        let now = chrono::Utc::now();
        let txn = eh_store::begin_scoped(&self.db, p.data_scope(&req.tenant))
            .await
            .map_err(failed)?;
        let resolved =
            store::resolve_task(&txn, &req.tenant, req.task_id.trim(), &p.actor(), note, now)
                .await
                .map_err(failed)?;
        eh_store::commit(txn).await.map_err(failed)?;
        resolved
            .map(|t| Response::new(task_pb(t)))
            .ok_or_else(|| Status::not_found("no such open task"))
    }
}
