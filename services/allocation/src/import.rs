//! Importing a council's directory from Open Referral UK: read every service from the source
//! (`GET <base>/services` page by page, then `GET <base>/services/{id}` for each in full, or a file
//! of the same JSON), then apply it in one transaction — services created, updated or unchanged,
//! those gone from the source (or no longer active) withdrawn — with the result stored and
//! announced (`directory_imported`). A source that cannot be read fails the import and changes
//! nothing; so does one that lists no service at all while the directory holds some (an empty
//! answer from a broken endpoint must not withdraw every provider).
use crate::domain::oruk::{self, Refusal};
use crate::settings::{Council, DirectorySettings, Source};
use crate::store::{self, Change, ImportRecord};
use chrono::{DateTime, Utc};
use eh_bus::{Envelope, OutboundMessage, ServiceContext};
use futures::StreamExt;
use prost::Message;
use sea_orm::ConnectionTrait;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// The largest response body read from a directory (a page, or one service in full).
const MAX_BODY: usize = 16 * 1024 * 1024;
/// Services fetched in full at once.
const FETCH_CONCURRENCY: usize = 8;

/// What a source gave: the records, in order, and those refused before reading them.
#[derive(Debug, Default)]
pub struct Fetched {
    pub records: Vec<Value>,
    pub refused: Vec<Refusal>,
}

/// Reads every service from `source`.
///
/// # Errors
/// When the source cannot be read (unreachable, an HTTP error, not JSON, too many pages): the
/// message says which request and why, never a record's content.
pub async fn fetch(source: &Source, d: &DirectorySettings) -> Result<Fetched, String> {
    match source {
        Source::File(path) => {
            let bytes = tokio::fs::read(path)
                .await
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            let v: Value = serde_json::from_slice(&bytes)
                .map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
            Ok(Fetched {
                records: oruk::read_file(&v)?,
                refused: Vec::new(),
            })
        }
        Source::Url(base) => fetch_api(base, d).await,
    }
}

async fn get_json(client: &reqwest::Client, url: &str) -> Result<Option<Value>, String> {
    let resp = client
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| format!("GET {url}: {}", without_url(&e)))?;
    if resp.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !resp.status().is_success() {
        return Err(format!("GET {url}: HTTP {}", resp.status().as_u16()));
    }
    if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
        return Err(format!(
            "GET {url}: the response is larger than {MAX_BODY} bytes"
        ));
    }
    let mut body = Vec::new();
    let mut resp = resp;
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("GET {url}: {}", without_url(&e)))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(format!(
                "GET {url}: the response is larger than {MAX_BODY} bytes"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| format!("GET {url}: not JSON ({e})"))
}

fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s
            .replace(&format!(" ({u})"), "")
            .replace(u.as_str(), "<url>");
    }
    s
}

async fn fetch_api(base: &str, d: &DirectorySettings) -> Result<Fetched, String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(d.timeout_secs))
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
    let mut out = Fetched::default();
    let mut ids: Vec<String> = Vec::new();
    let mut position = 0usize;
    let mut page = 1u32;
    loop {
        if page > d.max_pages {
            return Err(format!(
                "more than {} pages of services (directory.max_pages)",
                d.max_pages
            ));
        }
        let url = format!("{base}/services?page={page}&per_page={}", d.per_page);
        let v = get_json(&client, &url)
            .await?
            .ok_or_else(|| format!("GET {url}: HTTP 404"))?;
        let p = oruk::read_page(&v).map_err(|e| format!("GET {url}: {e}"))?;
        if p.contents.is_empty() {
            break;
        }
        for item in &p.contents {
            position += 1;
            match oruk::listed_id(item) {
                Some(id) => ids.push(id),
                None => out.refused.push(Refusal {
                    record: format!("#{position}"),
                    path: "/id".into(),
                    reason: "a listed service needs an id to be fetched in full".into(),
                }),
            }
        }
        let last = p.last_page == Some(true) || p.total_pages.is_some_and(|t| u64::from(page) >= t);
        if last {
            break;
        }
        page += 1;
    }
    let fetched: Vec<(String, Result<Option<Value>, String>)> =
        futures::stream::iter(ids.into_iter().map(|id| {
            let client = client.clone();
            let url = format!("{base}/services/{}", segment(&id));
            async move { (id, get_json(&client, &url).await) }
        }))
        .buffered(FETCH_CONCURRENCY)
        .collect()
        .await;
    for (id, got) in fetched {
        match got? {
            Some(v) => out.records.push(v),
            None => out.refused.push(Refusal {
                record: id,
                path: String::new(),
                reason: "listed, but GET /services/{id} answered 404".into(),
            }),
        }
    }
    Ok(out)
}

/// `id` as one path segment.
fn segment(id: &str) -> String {
    id.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Applies the `fetched` records to `tenant`'s directory in one transaction, storing and
/// announcing the result.
///
/// # Errors
/// Only when the database fails (the import is then not recorded either).
#[allow(clippy::too_many_arguments)]
pub async fn apply(
    ctx: &ServiceContext,
    tenant: &str,
    council: &Council,
    source: &str,
    trigger: &str,
    started_at: DateTime<Utc>,
    fetched: Fetched,
    actor: &str,
) -> Result<ImportRecord, sea_orm::DbErr> {
    let now = ctx.clock.now();
    let mut record = ImportRecord {
        id: uuid::Uuid::now_v7().to_string(),
        tenant: tenant.into(),
        source: source.into(),
        trigger: trigger.into(),
        started_at,
        finished_at: now,
        outcome: "completed".into(),
        error: String::new(),
        created: 0,
        updated: 0,
        unchanged: 0,
        withdrawn: 0,
        refused: fetched.refused,
    };
    let mut services = Vec::new();
    let mut first_at: HashMap<String, usize> = HashMap::new();
    for (i, v) in fetched.records.iter().enumerate() {
        match oruk::read_service(v, i + 1) {
            Ok(s) => {
                if let Some(k) = first_at.get(&s.id) {
                    record.refused.push(Refusal {
                        record: s.id.clone(),
                        path: "/id".into(),
                        reason: format!("the same id as record #{k}: only the first is taken"),
                    });
                } else {
                    first_at.insert(s.id.clone(), i + 1);
                    services.push(s);
                }
            }
            Err(r) => record.refused.extend(r),
        }
    }
    let txn = eh_store::begin_scoped(&ctx.db, tenant).await?;
    if txn.get_database_backend() == sea_orm::DbBackend::Postgres {
        // One import of a council at a time, across replicas.
        txn.execute_raw(eh_store::stmt(
            sea_orm::DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock(hashtext($1))",
            [format!("eh.allocation.import.{tenant}").into()],
        ))
        .await?;
    }
    let before: HashSet<String> = store::offerable_ids(&txn, tenant)
        .await?
        .into_iter()
        .collect();
    if services.is_empty() && store::count_services(&txn, tenant).await? > 0 {
        record.outcome = "failed".into();
        record.error = "the source gave no service that could be read; nothing was changed or \
                        withdrawn (an empty answer must not withdraw the whole directory)"
            .into();
    } else {
        let mut seen = HashSet::new();
        for s in &services {
            let needs = oruk::needs_of(&s.taxonomy_terms, &council.taxonomy_needs);
            match store::upsert_service(&txn, tenant, s, &needs, &record.id, now).await? {
                Change::Created => record.created += 1,
                Change::Updated => record.updated += 1,
                Change::Unchanged => record.unchanged += 1,
            }
            seen.insert(s.id.clone());
        }
        store::withdraw_absent(&txn, tenant, &seen, &record.id, now).await?;
        let after: HashSet<String> = store::offerable_ids(&txn, tenant)
            .await?
            .into_iter()
            .collect();
        record.withdrawn = u32::try_from(before.difference(&after).count()).unwrap_or(u32::MAX);
    }
    record.finished_at = ctx.clock.now();
    store::insert_import(&txn, &record).await?;
    emit(ctx, &txn, &record, actor).await?;
    eh_store::commit(txn).await?;
    Ok(record)
}

/// Records a failed import (the source could not be read): nothing else changes.
///
/// # Errors
/// When the database fails.
pub async fn failed(
    ctx: &ServiceContext,
    tenant: &str,
    source: &str,
    trigger: &str,
    started_at: DateTime<Utc>,
    error: String,
    actor: &str,
) -> Result<ImportRecord, sea_orm::DbErr> {
    let record = ImportRecord {
        id: uuid::Uuid::now_v7().to_string(),
        tenant: tenant.into(),
        source: source.into(),
        trigger: trigger.into(),
        started_at,
        finished_at: ctx.clock.now(),
        outcome: "failed".into(),
        error,
        created: 0,
        updated: 0,
        unchanged: 0,
        withdrawn: 0,
        refused: Vec::new(),
    };
    let txn = eh_store::begin_scoped(&ctx.db, tenant).await?;
    store::insert_import(&txn, &record).await?;
    emit(ctx, &txn, &record, actor).await?;
    eh_store::commit(txn).await?;
    Ok(record)
}

async fn emit(
    ctx: &ServiceContext,
    txn: &sea_orm::DatabaseTransaction,
    r: &ImportRecord,
    actor: &str,
) -> Result<(), sea_orm::DbErr> {
    let spec = &eh_proto::catalogue::DIRECTORY_IMPORTED;
    let payload = eh_proto::allocation::v1::DirectoryImported {
        import_id: r.id.clone(),
        source: r.source.clone(),
        outcome: r.outcome.clone(),
        created: r.created,
        updated: r.updated,
        unchanged: r.unchanged,
        withdrawn: r.withdrawn,
        refused: u32::try_from(r.refused.len()).unwrap_or(u32::MAX),
        at: r.finished_at.to_rfc3339(),
    };
    let env = Envelope::new(spec.payload, &r.tenant, actor, r.finished_at);
    let subject = spec.subject(ctx.namespace(), &r.tenant);
    ctx.outbox
        .enqueue(
            txn,
            &OutboundMessage::event(subject, &env, payload.encode_to_vec()),
        )
        .await
        .map_err(|e| sea_orm::DbErr::Custom(e.to_string()))
}

/// Reads `council`'s source and applies it: the whole import, recorded either way.
///
/// # Errors
/// When the council has no source configured (the message names the setting), or the database
/// fails.
pub async fn run(
    ctx: &ServiceContext,
    tenant: &str,
    council: &Council,
    trigger: &str,
    actor: &str,
) -> Result<ImportRecord, String> {
    let Some(source) = &council.source else {
        return Err(format!(
            "tenants.{tenant}.allocation.directory: no url or file is configured"
        ));
    };
    let started_at = ctx.clock.now();
    let label = source.label();
    let result = match fetch(source, &council.directory).await {
        Ok(f) => apply(ctx, tenant, council, &label, trigger, started_at, f, actor).await,
        // The error names the request: its URL's secrets are masked before it is kept or shown.
        Err(e) => {
            let e = eh_platform::config::mask_url_credentials(&e).into_owned();
            failed(ctx, tenant, &label, trigger, started_at, e, actor).await
        }
    };
    let record = result.map_err(|e| format!("database: {e}"))?;
    tracing::info!(
        tenant,
        import_id = %record.id,
        outcome = %record.outcome,
        created = record.created,
        updated = record.updated,
        unchanged = record.unchanged,
        withdrawn = record.withdrawn,
        refused = record.refused.len(),
        "directory import finished"
    );
    Ok(record)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_become_one_path_segment() {
        assert_eq!(super::segment("abc-1.2_x~"), "abc-1.2_x~");
        assert_eq!(super::segment("a/b c"), "a%2Fb%20c");
    }
}
