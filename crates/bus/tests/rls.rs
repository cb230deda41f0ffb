//! A bus handler's work runs in its council's scope, on real PostgreSQL as the services' role
//! (owning nothing): through the path casework, consent and intake's screening use —
//! `Batcher` → `InSavepoints` → `eh_store::together` — a handler whose queries forget their
//! `WHERE tenant = …` still sees and changes its council's rows alone; the inbox and outbox rows
//! it writes are its council's; a row it writes for another council is refused; the relay (a
//! named system-scope worker) still publishes every council's events.
use async_trait::async_trait;
use eh_bus::batch::{Batcher, InSavepoints, SavepointWork};
use eh_bus::embedded::EmbeddedTransport;
use eh_bus::{Envelope, Handled, HandlerError, OutboundMessage, Received, ServiceContext, inbox};
use eh_store::{Location, Migration, Together, Within, stmt};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

const SERVICE: &str = "svc";

const PEOPLE: Migration = Migration {
    owner: "svc",
    version: 1,
    name: "people",
    sql: "CREATE TABLE people (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, name TEXT NOT NULL, \
          seen INTEGER NOT NULL DEFAULT 0)",
};

/// One message's work: its council, the message, and whether to write a row for `forge`.
struct Job {
    tenant: String,
    msg: Received,
    forge: Option<String>,
}

/// A handler whose queries forget the tenant filter: it counts every person it can see, marks
/// every person it can see as seen, and announces how many it saw.
#[derive(Clone)]
struct Careless {
    ctx: ServiceContext,
    saw: Arc<Mutex<BTreeMap<String, Vec<String>>>>,
}

impl SavepointWork for Careless {
    type Job = Job;

    fn context(&self) -> &ServiceContext {
        &self.ctx
    }
}

#[async_trait]
impl Together<Job> for Careless {
    type Output = Result<Handled, HandlerError>;

    fn tenant<'j>(&self, job: &'j Job) -> &'j str {
        &job.tenant
    }

    async fn each(&self, within: Within<'_>, job: &Job) -> Result<Handled, HandlerError> {
        let db = |e: sea_orm::DbErr| HandlerError::db(&e);
        let txn = within.begin().await.map_err(db)?;
        if !inbox::claim(&txn, "careless", &job.msg.key())
            .await
            .map_err(|e| HandlerError::bus(&e))?
        {
            return Ok(Handled::Duplicate);
        }
        // No `WHERE tenant = …`, anywhere.
        let names: Vec<String> = txn
            .query_all_raw(stmt(
                DbBackend::Postgres,
                "SELECT tenant || ':' || name FROM people ORDER BY id",
                [],
            ))
            .await
            .map_err(db)?
            .iter()
            .map(|r| r.try_get_by_index(0))
            .collect::<Result<_, _>>()
            .map_err(db)?;
        txn.execute_unprepared("UPDATE people SET seen = seen + 1")
            .await
            .map_err(db)?;
        if let Some(other) = &job.forge {
            txn.execute_raw(stmt(
                DbBackend::Postgres,
                "INSERT INTO people (id, tenant, name) VALUES ($1, $2, 'forged')",
                [
                    uuid::Uuid::now_v7().to_string().into(),
                    other.clone().into(),
                ],
            ))
            .await
            .map_err(db)?;
        }
        let env = Envelope::new("test.Saw", &job.tenant, "service:svc", chrono::Utc::now());
        self.ctx
            .outbox
            .enqueue(
                &txn,
                &OutboundMessage::event(
                    format!("{}.{}.svc.saw", self.ctx.namespace(), job.tenant),
                    &env,
                    names.len().to_string().into_bytes(),
                ),
            )
            .await
            .map_err(|e| HandlerError::bus(&e))?;
        within.commit(txn).await.map_err(db)?;
        self.saw
            .lock()
            .unwrap()
            .entry(job.tenant.clone())
            .or_default()
            .extend(names);
        Ok(Handled::Done)
    }
}

fn message(ns: &str, tenant: &str, id: &str) -> Received {
    let env = Envelope::new("test.Poke", tenant, "system:test", chrono::Utc::now());
    let mut headers = env.to_headers();
    headers.insert(eh_bus::envelope::H_ID.into(), id.into());
    Received {
        subject: format!("{ns}.{tenant}.svc.poke"),
        headers,
        payload: bytes::Bytes::new(),
        delivered: 1,
        stream_seq: 0,
    }
}

async fn count(db: &impl ConnectionTrait, sql: &str) -> anyhow::Result<i64> {
    Ok(db
        .query_one_raw(stmt(DbBackend::Postgres, sql, []))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no row"))?
        .try_get_by_index(0)?)
}

/// The service as production runs it: migrated by the owner, used by the services' role.
async fn service(dir: &std::path::Path) -> anyhow::Result<(Careless, DatabaseConnection)> {
    let (owner_url, service_url) = eh_testkit::fresh_database_split().await?;
    let location = |url: &str| Location {
        url: url.to_string(),
        schema: Some(SERVICE.into()),
        max_connections: 4,
    };
    let owner = eh_store::connect(&location(&owner_url)).await?;
    eh_store::migrate(
        &owner,
        SERVICE,
        &[eh_bus::outbox::MIGRATIONS, &[PEOPLE]].concat(),
    )
    .await?;
    eh_store::grant(&owner, eh_testkit::APP_ROLE).await?;
    let seed = eh_store::begin_system(&owner, eh_store::SystemWorker::Migrate).await?;
    seed.execute_unprepared(
        "INSERT INTO people (id, tenant, name) VALUES
           ('w1', 'worcs', 'Ann'), ('w2', 'worcs', 'Bea'), ('s1', 'staffs', 'Cat')",
    )
    .await?;
    eh_store::commit(seed).await?;
    let db = eh_store::connect(&location(&service_url)).await?;
    let bus = eh_store::connect(&eh_testkit::sqlite(dir, "bus.sqlite")).await?;
    let transport: Arc<dyn eh_bus::Transport> = Arc::new(EmbeddedTransport::open(bus).await?);
    let settings = eh_testkit::settings(false, dir, None, None).await?;
    let ctx = ServiceContext::new(
        "svc",
        Arc::new(settings),
        db,
        transport,
        Arc::new(eh_platform::SystemClock),
    );
    let inspector = eh_testkit::inspector(&location(&owner_url)).await?;
    Ok((
        Careless {
            ctx,
            saw: Arc::default(),
        },
        inspector,
    ))
}

#[tokio::test]
async fn a_handler_that_forgets_its_tenant_filter_sees_only_its_councils_rows() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let (work, inspector) = service(dir.path()).await?;
    let ns = work.ctx.namespace().to_string();
    let batches: Batcher<InSavepoints<Careless>> = Batcher::new(64);
    // Several of each council, queued together (one batch per council, as the services key
    // them), and one alone.
    let mut answers = Vec::new();
    for (i, tenant) in ["worcs", "staffs", "worcs", "staffs", "worcs"]
        .iter()
        .enumerate()
    {
        let job = Job {
            tenant: tenant.to_string(),
            msg: message(&ns, tenant, &format!("m{i}")),
            forge: None,
        };
        answers.push(batches.admit(InSavepoints(work.clone()), &format!("c/{tenant}"), job));
    }
    for a in answers {
        assert_eq!(a.await?, Handled::Done);
    }
    let saw = work.saw.lock().unwrap().clone();
    assert!(
        saw["worcs"]
            .iter()
            .all(|n| n == "worcs:Ann" || n == "worcs:Bea"),
        "{saw:?}"
    );
    assert_eq!(saw["worcs"].len(), 3 * 2);
    assert_eq!(saw["staffs"], ["staffs:Cat", "staffs:Cat"]);
    // The filter-less UPDATE touched each council's rows once per message of that council.
    let seen: Vec<(String, i32)> = inspector
        .query_all_raw(stmt(
            DbBackend::Postgres,
            "SELECT id, seen FROM people ORDER BY id",
            [],
        ))
        .await?
        .iter()
        .map(|r| Ok((r.try_get_by_index(0)?, r.try_get_by_index(1)?)))
        .collect::<Result<_, sea_orm::DbErr>>()?;
    assert_eq!(seen, [("s1".into(), 2), ("w1".into(), 3), ("w2".into(), 3)]);
    // The inbox and outbox rows are their council's.
    assert_eq!(
        count(
            &inspector,
            "SELECT COUNT(*) FROM eh_inbox WHERE tenant = split_part(message_key, ':', 1)"
        )
        .await?,
        5
    );
    assert_eq!(
        count(
            &inspector,
            "SELECT COUNT(*) FROM eh_outbox WHERE subject LIKE '%.' || tenant || '.svc.saw'"
        )
        .await?,
        5
    );
    // The services' pool itself, in no scope, sees none of it.
    assert_eq!(count(&work.ctx.db, "SELECT COUNT(*) FROM people").await?, 0);
    assert_eq!(
        count(&work.ctx.db, "SELECT COUNT(*) FROM eh_outbox").await?,
        0
    );

    // A handler of worcs writing a row for staffs is refused, and nothing of it is kept.
    let forged = Job {
        tenant: "worcs".into(),
        msg: message(&ns, "worcs", "forged"),
        forge: Some("staffs".into()),
    };
    let e = batches
        .admit(InSavepoints(work.clone()), "c/worcs", forged)
        .await
        .expect_err("another council's row");
    assert!(e.to_string().contains("row-level security"), "{e}");
    assert_eq!(
        count(
            &inspector,
            "SELECT COUNT(*) FROM people WHERE name = 'forged'"
        )
        .await?,
        0
    );

    // The relay publishes every council's rows: a named system-scope worker.
    let relay = eh_bus::relay::Relay {
        service: "svc".into(),
        db: work.ctx.db.clone(),
        transport: work.ctx.transport.clone(),
        outbox: work.ctx.outbox.clone(),
        metrics: work.ctx.metrics.clone(),
        faults: work.ctx.faults.clone(),
        retention: std::time::Duration::from_secs(3600),
        urgent_only: false,
    };
    let before = eh_platform::metrics::system_scope_uses("relay");
    assert_eq!(relay.publish_once().await?, 5);
    assert!(eh_platform::metrics::system_scope_uses("relay") > before);
    assert_eq!(
        count(
            &inspector,
            "SELECT COUNT(*) FROM eh_outbox WHERE published_at IS NULL"
        )
        .await?,
        0
    );
    Ok(())
}
