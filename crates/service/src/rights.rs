//! The family's data rights, as each service takes part in them (the records service runs them):
//! subject access (`ExportPersonData`: every row a service holds about a person's family, each
//! third party's information flagged for redaction) and destruction (every such row deleted,
//! with the outbox rows that carry the family's ids, in one transaction with the service's
//! confirmation to records).
//!
//! A service describes what it holds once, as [`Holding`]s: each table and the condition that
//! selects a family's rows in it, in terms of the ids records knows make up the family
//! (`:family`, `:person`, `:referral`, `:case`; `:tenant` for the council). Export and destruction
//! both follow that one list, so what a subject access shows is what destruction deletes.
use crate::access::{self, Call};
use crate::errors::{Violation, invalid};
use eh_auth::Auditor;
use eh_bus::{Envelope, Handled, HandlerError, OutboundMessage, Received, ServiceContext};
use eh_proto::catalogue::EventSpec;
use eh_proto::records::v1 as pb;
use prost::Message;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Value};

/// Who may ask a service for everything it holds about a person: the council's team managers and
/// its information governance officers (records forwards the caller's credential).
pub const ROLES: &[&str] = &["team_manager", "information_governance"];

/// The gRPC method every service serves for subject access.
pub const METHOD: &str = "ExportPersonData";

/// One table of a service and how a family's rows are found in it.
#[derive(Debug, Clone, Copy)]
pub struct Holding {
    pub table: &'static str,
    /// An SQL condition on the table's columns selecting the family's rows; `:family`,
    /// `:person`, `:referral` and `:case` stand for the lists of those ids, `:tenant` for the
    /// council.
    pub rows: &'static str,
    /// A column naming the person a row is about: a row about someone other than the subject is
    /// flagged (`another_family_member`).
    pub person: Option<&'static str>,
    /// Columns holding a third party's information, each with why (`referrer`, `practitioner`,
    /// `free_text`).
    pub third_party: &'static [(&'static str, &'static str)],
}

/// The ids that make up a family, as records knows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ids {
    pub tenant: String,
    pub family: Vec<String>,
    pub person: Vec<String>,
    pub referral: Vec<String>,
    pub case: Vec<String>,
}

impl Ids {
    /// Every id, each once (for the outbox sweep).
    pub fn all(&self) -> Vec<&str> {
        let mut all: Vec<&str> = self
            .family
            .iter()
            .chain(&self.person)
            .chain(&self.referral)
            .chain(&self.case)
            .map(String::as_str)
            .filter(|s| !s.trim().is_empty())
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    fn list(&self, name: &str) -> &[String] {
        match name {
            "family" => &self.family,
            "person" => &self.person,
            "referral" => &self.referral,
            _ => &self.case,
        }
    }
}

/// `cond` with each `:list` expanded to numbered placeholders (`($1, $2)`; `(NULL)` for an empty
/// list, which matches nothing) and `:tenant` to one, and the values in order.
pub fn expand(cond: &str, ids: &Ids) -> (String, Vec<Value>) {
    let mut out = String::new();
    let mut values: Vec<Value> = Vec::new();
    let mut rest = cond;
    while let Some(at) = rest.find(':') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_lowercase())
            .collect();
        match name.as_str() {
            "tenant" => {
                values.push(ids.tenant.clone().into());
                out.push_str(&format!("${}", values.len()));
            }
            "family" | "person" | "referral" | "case" => {
                let list = ids.list(&name);
                if list.is_empty() {
                    out.push_str("(NULL)");
                } else {
                    let mut marks = Vec::with_capacity(list.len());
                    for id in list {
                        values.push(id.clone().into());
                        marks.push(format!("${}", values.len()));
                    }
                    out.push('(');
                    out.push_str(&marks.join(", "));
                    out.push(')');
                }
            }
            _ => {
                out.push(':');
                out.push_str(&name);
            }
        }
        rest = &after[name.len()..];
    }
    out.push_str(rest);
    (out, values)
}

/// The rows of one holding, each as a JSON object.
async fn rows_json(
    db: &impl ConnectionTrait,
    h: &Holding,
    ids: &Ids,
) -> Result<Vec<serde_json::Value>, DbErr> {
    let backend = db.get_database_backend();
    let (cond, values) = expand(h.rows, ids);
    let sql = match backend {
        DbBackend::Postgres => format!(
            "SELECT row_to_json(t)::text AS j FROM {} t WHERE {cond}",
            h.table
        ),
        _ => {
            let cols = db
                .query_all_raw(eh_store::stmt(
                    backend,
                    &format!("SELECT name FROM pragma_table_info('{}')", h.table),
                    [],
                ))
                .await?;
            let mut pairs = Vec::new();
            for c in cols {
                let name: String = c.try_get("", "name")?;
                pairs.push(format!(
                    "'{name}', CASE typeof({name}) WHEN 'blob' THEN hex({name}) ELSE {name} END"
                ));
            }
            format!(
                "SELECT json_object({}) AS j FROM {} WHERE {cond}",
                pairs.join(", "),
                h.table
            )
        }
    };
    let rows = db
        .query_all_raw(eh_store::stmt(backend, &sql, values))
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let j: String = r.try_get("", "j")?;
        out.push(serde_json::from_str(&j).map_err(|e| DbErr::Custom(e.to_string()))?);
    }
    Ok(out)
}

fn is_set(v: Option<&serde_json::Value>) -> bool {
    match v {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::String(s)) => !s.trim().is_empty(),
        Some(_) => true,
    }
}

/// Everything `holdings` hold about `ids`' family, for subject access by `subject` (a person id):
/// each third party's information flagged, never removed.
///
/// # Errors
/// The database failed.
pub async fn export(
    db: &impl ConnectionTrait,
    service: &str,
    holdings: &[Holding],
    subject: &str,
    ids: &Ids,
) -> Result<pb::PersonDataExport, DbErr> {
    let mut out = pb::PersonDataExport {
        service: service.into(),
        ..Default::default()
    };
    for h in holdings {
        let rows = rows_json(db, h, ids).await?;
        if rows.is_empty() {
            continue;
        }
        for (i, row) in rows.iter().enumerate() {
            let flag = |field: &str, reason: &str| pb::Redaction {
                service: service.into(),
                table: h.table.into(),
                row: u32::try_from(i).unwrap_or(u32::MAX),
                field: field.into(),
                reason: reason.into(),
            };
            if let Some(col) = h.person
                && let Some(serde_json::Value::String(p)) = row.get(col)
                && !p.is_empty()
                && p != subject
            {
                out.redactions.push(flag(col, "another_family_member"));
            }
            for (col, why) in h.third_party {
                if is_set(row.get(*col)) {
                    out.redactions.push(flag(col, why));
                }
            }
        }
        out.tables.push(pb::HeldRows {
            table: h.table.into(),
            rows_json: rows.iter().map(ToString::to_string).collect(),
        });
    }
    Ok(out)
}

/// Deletes every row `holdings` hold about `ids`' family (in the order given: a table whose rows
/// others refer to comes after them), and every outbox row whose payload or headers carry one of
/// the family's ids. The number of rows deleted.
///
/// # Errors
/// The database failed (nothing is deleted: the caller's transaction rolls back).
pub async fn destroy(
    db: &impl ConnectionTrait,
    holdings: &[Holding],
    ids: &Ids,
) -> Result<u64, DbErr> {
    let backend = db.get_database_backend();
    let mut deleted = 0;
    for h in holdings {
        let (cond, values) = expand(h.rows, ids);
        let sql = format!("DELETE FROM {} WHERE {cond}", h.table);
        deleted += db
            .execute_raw(eh_store::stmt(backend, &sql, values))
            .await?
            .rows_affected();
    }
    let carries = match backend {
        DbBackend::Postgres => {
            "DELETE FROM eh_outbox WHERE position(convert_to($1, 'UTF8') in payload) > 0 \
             OR strpos(headers, $1) > 0"
        }
        _ => {
            "DELETE FROM eh_outbox WHERE instr(payload, CAST($1 AS BLOB)) > 0 OR instr(headers, $1) > 0"
        }
    };
    for id in ids.all() {
        deleted += db
            .execute_raw(eh_store::stmt(backend, carries, [id.into()]))
            .await?
            .rows_affected();
    }
    Ok(deleted)
}

/// The ids of a subject access request, checked: INVALID_ARGUMENT naming each missing field.
///
/// # Errors
/// No person id.
pub fn ids_of(req: &pb::ExportPersonDataRequest) -> Result<Ids, tonic::Status> {
    if req.person_id.trim().is_empty() {
        return Err(invalid(
            "the request names no person",
            &[Violation::new("person_id", "required")],
        ));
    }
    let mut person = req.person_ids.clone();
    if !person.contains(&req.person_id) {
        person.push(req.person_id.clone());
    }
    Ok(Ids {
        tenant: req.tenant.clone(),
        family: req.family_ids.clone(),
        person,
        referral: req.referral_ids.clone(),
        case: req.case_ids.clone(),
    })
}

/// A service's `ExportPersonData`: admitted by its access table (team managers and information
/// governance of the council; audited, naming the person), then everything `holdings` hold about
/// the family read in the council's scope.
///
/// # Errors
/// As [`access::admit`]; INVALID_ARGUMENT for a request naming no person; INTERNAL when the
/// database fails.
#[allow(clippy::too_many_arguments)]
pub async fn export_person_data(
    service: &'static str,
    db: &sea_orm::DatabaseConnection,
    settings: &eh_platform::Settings,
    auditor: &Auditor,
    table: &'static access::Table,
    holdings: &[Holding],
    request: tonic::Request<pb::ExportPersonDataRequest>,
) -> Result<tonic::Response<pb::PersonDataExport>, tonic::Status> {
    let p = eh_auth::principal(&request)?;
    let req = request.into_inner();
    let record = format!("person:{}", req.person_id);
    let call = Call {
        principal: &p,
        tenant: &req.tenant,
        method: METHOD,
        record: &record,
        service,
    };
    access::admit(auditor, settings, table, &call).await?;
    let ids = ids_of(&req)?;
    let internal = |e: DbErr| crate::errors::internal(service, e);
    let txn = eh_store::begin_scoped(db, &req.tenant)
        .await
        .map_err(internal)?;
    let out = export(&txn, service, holdings, &req.person_id, &ids).await;
    eh_store::end_read(txn).await.map_err(internal)?;
    Ok(tonic::Response::new(out.map_err(internal)?))
}

/// The destruction consumer of a service: `holdings` and its confirmation event, on the
/// catalogue's subscription `sub` (`<service>_destruction_ordered`).
pub fn spawn_destruction(
    ctx: &ServiceContext,
    sub: &'static eh_proto::catalogue::Subscription,
    holdings: &'static [Holding],
    confirm: &'static EventSpec,
) {
    spawn_destruction_with(ctx, sub, holdings, confirm, None);
}

/// As [`spawn_destruction`], with the service's own first step.
pub fn spawn_destruction_with(
    ctx: &ServiceContext,
    sub: &'static eh_proto::catalogue::Subscription,
    holdings: &'static [Holding],
    confirm: &'static EventSpec,
    before: Option<std::sync::Arc<dyn BeforeDestruction>>,
) {
    ctx.spawn_subscription(
        sub,
        1,
        std::sync::Arc::new(DestructionHandler {
            ctx: ctx.clone(),
            consumer: sub.consumer,
            holdings,
            confirm,
            before,
        }),
    );
}

/// A service's consumer of records' `destruction_ordered`: deletes every row its `holdings` hold
/// about the family, and its outbox rows carrying their ids, and confirms with `confirm` — all in
/// one transaction with its inbox claim, so a repeat does nothing twice — and keeps the family's
/// ids (ids only) so that a message about it arriving later recreates nothing
/// ([`eh_bus::inbox::claim_live`]).
pub struct DestructionHandler {
    pub ctx: ServiceContext,
    pub consumer: &'static str,
    pub holdings: &'static [Holding],
    pub confirm: &'static EventSpec,
    /// What the service must do first in the same transaction (intake takes its people lock, so
    /// every replica's index of people forgets the destroyed ones).
    pub before: Option<std::sync::Arc<dyn BeforeDestruction>>,
}

/// A service's own step at the start of a destruction's transaction.
#[async_trait::async_trait]
pub trait BeforeDestruction: Send + Sync {
    async fn before(&self, txn: &sea_orm::DatabaseTransaction, tenant: &str) -> Result<(), DbErr>;
}

#[async_trait::async_trait]
impl eh_bus::Handler for DestructionHandler {
    async fn handle(&self, msg: &Received) -> Result<Handled, HandlerError> {
        let ctx = &self.ctx;
        let tenant = eh_bus::subjects::tenant_of(ctx.namespace(), &msg.subject)
            .ok_or_else(|| {
                HandlerError::Permanent(format!("subject {} has no tenant", msg.subject))
            })?
            .to_string();
        let ev = pb::DestructionOrdered::decode(msg.payload.as_ref())
            .map_err(|e| HandlerError::Permanent(format!("not a DestructionOrdered: {e}")))?;
        if ev.destruction_id.trim().is_empty() {
            return Err(HandlerError::Permanent(
                "DestructionOrdered has no destruction_id".into(),
            ));
        }
        let ids = Ids {
            tenant: tenant.clone(),
            family: ev.family_ids,
            person: ev.person_ids,
            referral: ev.referral_ids,
            case: ev.case_ids,
        };
        let db = |e: DbErr| HandlerError::db(&e);
        let txn = eh_store::begin_scoped(&ctx.db, &tenant).await.map_err(db)?;
        if !eh_bus::inbox::claim(&txn, self.consumer, &msg.key())
            .await
            .map_err(|e| HandlerError::bus(&e))?
        {
            return Ok(Handled::Duplicate);
        }
        // First the ids buried: the council's claims under way here commit first (their rows are
        // then deleted below), and every later message naming one recreates nothing.
        eh_bus::inbox::bury(&txn, &tenant, &ids.all())
            .await
            .map_err(|e| HandlerError::bus(&e))?;
        if let Some(b) = &self.before {
            b.before(&txn, &tenant).await.map_err(db)?;
        }
        let rows = destroy(&txn, self.holdings, &ids).await.map_err(db)?;
        let now = ctx.clock.now();
        let confirmation = pb::RecordsDestroyed {
            destruction_id: ev.destruction_id.clone(),
            service: ctx.service.into(),
            rows: u32::try_from(rows).unwrap_or(u32::MAX),
            at: now.to_rfc3339(),
        };
        let actor = format!("service:{}", ctx.service);
        let env = Envelope::new(self.confirm.payload, &tenant, &actor, now)
            .caused_by(msg.envelope().as_ref(), &msg.key());
        let out = OutboundMessage::event(
            self.confirm.subject(ctx.namespace(), &tenant),
            &env,
            confirmation.encode_to_vec(),
        );
        ctx.outbox
            .enqueue(&txn, &out)
            .await
            .map_err(|e| HandlerError::bus(&e))?;
        eh_store::commit(txn).await.map_err(db)?;
        tracing::info!(
            tenant,
            destruction_id = ev.destruction_id,
            rows,
            "family records destroyed"
        );
        Ok(Handled::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_expand_to_numbered_placeholders_and_an_empty_one_matches_nothing() {
        let ids = Ids {
            tenant: "worcs".into(),
            family: vec!["f1".into(), "f2".into()],
            person: vec![],
            referral: vec!["r1".into()],
            case: vec![],
        };
        let (sql, values) = expand(
            "tenant = :tenant AND (family_id IN :family OR id IN :person) AND r IN :referral",
            &ids,
        );
        assert_eq!(
            sql,
            "tenant = $1 AND (family_id IN ($2, $3) OR id IN (NULL)) AND r IN ($4)"
        );
        assert_eq!(values.len(), 4);
        let (sql, _) = expand("x::text = 'a:b'", &ids);
        assert_eq!(sql, "x::text = 'a:b'");
    }

    #[test]
    fn every_id_once() {
        let ids = Ids {
            tenant: "t".into(),
            family: vec!["a".into(), "b".into()],
            person: vec!["a".into(), " ".into()],
            referral: vec![],
            case: vec!["c".into()],
        };
        assert_eq!(ids.all(), ["a", "b", "c"]);
    }
}
