//! The notifications service against a real database (a SQLite file, and PostgreSQL from
//! `eh_testkit`) and a real SMTP server (`eh_testkit::SmtpSink`): events are fed to the handlers
//! directly, the sender is run by hand, and what reaches the SMTP server is parsed back. Time is
//! a ManualClock. Two councils are configured (worcs and staffs, with their own front-door and
//! team-manager mailboxes); staffs has its own sender and template overrides.
use anyhow::{Context, Result, ensure};
use chrono::{TimeZone, Utc};
use eh_bus::embedded::EmbeddedTransport;
use eh_bus::{Handled, Handler, Received, ServiceContext};
use eh_notifications::handlers::{
    CaseSteppedUpHandler, ConsentRequestedHandler, Notifier, PeopleMergedHandler,
    ReferralReceivedHandler, ScreeningDecidedHandler, ServiceLevelBreachedHandler,
};
use eh_notifications::sender::Sender;
use eh_notifications::store::{self, MessageRow};
use eh_notifications::{mailer::Mailer, migrations};
use eh_platform::Settings;
use eh_platform::clock::ManualClock;
use eh_platform::config::{Section, TenantSettings};
use eh_proto::casework::v1 as cw;
use eh_proto::intake::v1 as intake;
use eh_testkit::SmtpSink;
use prost::Message;
use sea_orm::ConnectionTrait;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const STAFFS_FROM: &str = "earlyhelp@staffs.test";
/// Children's and family names the events carry; none may appear in any email.
const CHILD: &str = "Leo";
const FAMILY: &str = "Sparrow";

struct Env {
    ctx: ServiceContext,
    clock: Arc<ManualClock>,
    smtp: SmtpSink,
    sender: Sender,
    notifier: Notifier,
    /// In front of PostgreSQL, when the test cuts the database off.
    proxy: Option<eh_testkit::Cuttable>,
    /// The test's own look at what was written, in the system scope: the service's pool sees
    /// nothing outside a council's scope.
    inspect: sea_orm::DatabaseConnection,
    _dir: tempfile::TempDir,
}

impl Env {
    fn ns(&self) -> String {
        self.ctx.namespace().to_string()
    }

    /// Sends everything due until nothing is.
    async fn drain(&self) -> Result<()> {
        for _ in 0..100 {
            if self.sender.send_due().await? == 0 {
                return Ok(());
            }
        }
        anyhow::bail!("the sender never ran dry")
    }

    /// Queues `n` acknowledgements of worcs, due since `due`: to `<prefix>-<i>@school.test`, about
    /// `<prefix>-<i>`.
    async fn queue_acknowledgements(
        &self,
        prefix: &str,
        n: usize,
        due: chrono::DateTime<Utc>,
    ) -> Result<()> {
        for i in 0..n {
            store::queue(
                &self.inspect,
                &store::NewMessage {
                    tenant: "worcs",
                    template: "referral_acknowledgement",
                    recipient: &format!("{prefix}-{i}@school.test"),
                    related_id: &format!("{prefix}-{i}"),
                    subject: prefix,
                    body: prefix,
                },
                due,
            )
            .await?;
        }
        Ok(())
    }

    async fn messages(&self, tenant: &str, related_id: &str) -> Result<Vec<MessageRow>> {
        Ok(store::for_related(&self.inspect, tenant, related_id).await?)
    }

    /// The one message of `template` about `related_id` to `recipient`.
    async fn message(
        &self,
        tenant: &str,
        related_id: &str,
        template: &str,
        recipient: &str,
    ) -> Result<MessageRow> {
        let all = self.messages(tenant, related_id).await?;
        let mut found: Vec<MessageRow> = all
            .iter()
            .filter(|m| m.template == template && m.recipient == recipient)
            .cloned()
            .collect();
        ensure!(
            found.len() == 1,
            "one {template} to {recipient:?} about {related_id}, found {}: {all:#?}",
            found.len()
        );
        Ok(found.remove(0))
    }

    async fn count_status(&self, status: &str) -> Result<i64> {
        let db = &self.inspect;
        let row = db
            .query_one_raw(eh_store::stmt(
                db.get_database_backend(),
                "SELECT COUNT(*) FROM messages WHERE status = $1",
                [status.into()],
            ))
            .await?
            .context("a count")?;
        Ok(row.try_get_by_index(0)?)
    }

    fn mails(&self) -> Vec<Mail> {
        self.smtp.messages().iter().map(Mail::parse).collect()
    }

    fn handlers(&self) -> Handlers {
        let n = || self.notifier.clone();
        Handlers {
            referral: ReferralReceivedHandler(n()),
            screening: ScreeningDecidedHandler(n()),
            step_up: CaseSteppedUpHandler(n()),
            consent: ConsentRequestedHandler(n()),
            breach: ServiceLevelBreachedHandler(n()),
            merged: PeopleMergedHandler(n()),
        }
    }
}

struct Handlers {
    referral: ReferralReceivedHandler,
    screening: ScreeningDecidedHandler,
    step_up: CaseSteppedUpHandler,
    consent: ConsentRequestedHandler,
    breach: ServiceLevelBreachedHandler,
    merged: PeopleMergedHandler,
}

/// An email as it reached the SMTP server, parsed back by an independent parser.
#[derive(Debug, Clone)]
struct Mail {
    to: Vec<String>,
    from: String,
    subject: String,
    body: String,
}

impl Mail {
    fn parse(m: &eh_testkit::ReceivedMail) -> Self {
        let parsed = mail_parser::MessageParser::default()
            .parse(&m.raw)
            .expect("an RFC 5322 message");
        Self {
            to: m.to.clone(),
            from: parsed
                .from()
                .and_then(|a| a.first())
                .and_then(|a| a.address())
                .unwrap_or_default()
                .to_string(),
            subject: parsed.subject().unwrap_or_default().to_string(),
            // Lines as written, whatever line endings the transfer used.
            body: parsed
                .body_text(0)
                .unwrap_or_default()
                .replace("\r\n", "\n"),
        }
    }

    fn text(&self) -> String {
        format!("{}\n{}", self.subject, self.body)
    }

    /// No child's name (nor the family's name, which is the child's too) in any email.
    fn assert_no_child_names(&self) {
        let text = self.text();
        assert!(
            !text.contains(CHILD) && !text.contains(FAMILY),
            "a child's name in an email: {text}"
        );
    }
}

fn to(mails: &[Mail], address: &str) -> Vec<Mail> {
    mails
        .iter()
        .filter(|m| m.to.iter().any(|t| t == address))
        .cloned()
        .collect()
}

async fn env(postgres: bool) -> Result<Env> {
    env_with(postgres, |_| {}).await
}

async fn env_with(postgres: bool, adjust: impl FnOnce(&mut Settings)) -> Result<Env> {
    env_built(postgres, adjust, false).await
}

/// An environment on PostgreSQL whose connections go through a proxy the test can cut.
async fn env_behind_proxy(adjust: impl FnOnce(&mut Settings)) -> Result<Env> {
    env_built(true, adjust, true).await
}

async fn env_built(
    postgres: bool,
    adjust: impl FnOnce(&mut Settings),
    behind_proxy: bool,
) -> Result<Env> {
    let dir = tempfile::tempdir()?;
    let smtp = SmtpSink::start()?;
    let mut settings = eh_testkit::settings(false, dir.path(), Some(smtp.port), None).await?;
    let staffs = settings
        .tenants
        .get_mut("staffs")
        .context("testkit configures staffs")?;
    set_section(
        staffs,
        "mail_from",
        serde_json::json!(format!("Staffordshire Early Help <{STAFFS_FROM}>")),
    )?;
    let mut templates = serde_json::Map::new();
    for (name, subject) in [
        ("step_up_front_door", "STAFFS STEP-UP {{case_id}}"),
        ("service_level_breach", "STAFFS BREACH {{case_id}}"),
        ("screening_outcome", "STAFFS SCREENING {{outcome}}"),
    ] {
        templates.insert(
            name.into(),
            serde_json::json!({"subject": subject, "body": "Staffordshire template for {{case_id}}.\n"}),
        );
    }
    set_section(staffs, "templates", templates.into())?;
    adjust(&mut settings);
    let mut location = eh_testkit::service_location(postgres, dir.path(), "notifications").await?;
    let proxy = if behind_proxy {
        let (proxy, via) = eh_testkit::Cuttable::in_front_of(&location.url).await?;
        location.url = via;
        Some(proxy)
    } else {
        None
    };
    let db = eh_store::connect(&location).await?;
    eh_store::migrate(&db, "notifications", &migrations()).await?;
    let bus_db = eh_store::connect(&eh_testkit::sqlite(dir.path(), "bus.sqlite")).await?;
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0)
            .single()
            .context("a date")?,
    ));
    let settings = Arc::new(settings);
    let ctx = ServiceContext::new(
        eh_notifications::SERVICE,
        settings.clone(),
        db,
        Arc::new(EmbeddedTransport::open(bus_db).await?),
        clock.clone(),
    );
    let mailer = Arc::new(Mailer::from_settings(&settings).map_err(anyhow::Error::msg)?);
    let sender = Sender::new(ctx.clone(), mailer);
    let notifier = Notifier::new(ctx.clone(), sender.waker());
    let inspect = eh_testkit::inspector_of(&ctx.db).await?;
    Ok(Env {
        inspect,
        ctx,
        clock,
        smtp,
        sender,
        notifier,
        proxy,
        _dir: dir,
    })
}

/// Two senders (two replicas) working the same queue at once: every message goes out once, to
/// its recipient, on its first attempt; the one to an unsafe address never does.
async fn two_senders_send_each_message_once(e: Env) -> Result<()> {
    let now = e.ctx.clock.now();
    let n = 300;
    e.queue_acknowledgements("ref", n, now - chrono::Duration::minutes(1))
        .await?;
    store::suppress(&e.inspect, "worcs", "REF-7@school.test", "moved away", now).await?;
    let settings = e.ctx.settings.clone();
    let other = Sender::new(
        e.ctx.clone(),
        Arc::new(Mailer::from_settings(&settings).map_err(anyhow::Error::msg)?),
    );
    let mut rounds = 0;
    loop {
        let (a, b) = tokio::join!(e.sender.send_due(), other.send_due());
        if a? + b? == 0 {
            break;
        }
        rounds += 1;
        anyhow::ensure!(rounds < 50, "the senders never ran dry");
    }
    let mails = e.mails();
    assert_eq!(mails.len(), n - 1);
    let mut recipients: Vec<&str> = mails
        .iter()
        .flat_map(|m| m.to.iter().map(String::as_str))
        .collect();
    recipients.sort_unstable();
    recipients.dedup();
    assert_eq!(recipients.len(), n - 1, "nobody got two");
    assert!(to(&mails, "ref-7@school.test").is_empty());
    assert_eq!(e.count_status("sent").await?, (n - 1) as i64);
    assert_eq!(e.count_status("suppressed").await?, 1);
    let row = e
        .inspect
        .query_one_raw(eh_store::stmt(
            e.ctx.db.get_database_backend(),
            "SELECT MAX(attempts) FROM messages",
            [],
        ))
        .await?
        .context("a row")?;
    assert_eq!(row.try_get_by_index::<i32>(0)?, 1, "one attempt each");
    Ok(())
}

/// Events arriving together are recorded together (one inbox claim, one commit), each once: 60
/// referrals, ten of them delivered twice at the same moment, give 60 acknowledgements, one
/// referrer record each and the unsafe father on the suppression list once. On PostgreSQL, which
/// cannot store a NUL, a referral whose referrer's name holds one fails alone: its batch is
/// recorded again one by one and its batch-mates are acknowledged.
async fn events_arriving_together_are_recorded_together_once_each(e: Env) -> Result<()> {
    let ns = e.ns();
    let h = e.handlers();
    let events: Vec<Received> = (0..60)
        .map(|i| {
            referral_received(
                &ns,
                "worcs",
                &format!("b{i}"),
                &format!("ref-{i}@school.test"),
            )
        })
        .collect();
    let deliveries: Vec<&Received> = events.iter().chain(&events[..10]).collect();
    let results =
        futures::future::join_all(deliveries.iter().map(|m| handle(&h.referral, m))).await;
    let results: Vec<Handled> = results.into_iter().collect::<Result<_>>()?;
    let done = results.iter().filter(|r| **r == Handled::Done).count();
    assert_eq!((done, results.len() - done), (60, 10));
    let count = |sql: &'static str| {
        let db = e.inspect.clone();
        async move {
            let row = db
                .query_one_raw(eh_store::stmt(db.get_database_backend(), sql, []))
                .await?
                .context("a count")?;
            anyhow::Ok(row.try_get_by_index::<i64>(0)?)
        }
    };
    assert_eq!(count("SELECT COUNT(*) FROM messages").await?, 60);
    assert_eq!(count("SELECT COUNT(*) FROM referrers").await?, 60);
    assert_eq!(count("SELECT COUNT(*) FROM suppressions").await?, 1);
    let db = &e.inspect;
    let claims = db
        .query_one_raw(eh_store::stmt(
            db.get_database_backend(),
            "SELECT COUNT(*), COUNT(DISTINCT handled_at) FROM eh_inbox WHERE consumer = $1",
            [eh_notifications::CONSUMER_REFERRAL_RECEIVED.into()],
        ))
        .await?
        .context("counts")?;
    let (claimed, batches): (i64, i64) = (claims.try_get_by_index(0)?, claims.try_get_by_index(1)?);
    assert_eq!(claimed, 60);
    assert!(
        batches < 60,
        "{batches} transactions for 60 events: not batched"
    );

    if e.ctx.db.get_database_backend() == sea_orm::DbBackend::Postgres {
        let poison = referral_received_from(&ns, "worcs", "p0", "p0@school.test", "Pat\0Teacher");
        let mates: Vec<Received> = (1..6)
            .map(|i| {
                referral_received(&ns, "worcs", &format!("p{i}"), &format!("p{i}@school.test"))
            })
            .collect();
        let (bad, good) = tokio::join!(
            handle(&h.referral, &poison),
            futures::future::join_all(mates.iter().map(|m| handle(&h.referral, m)))
        );
        let error = bad.expect_err("PostgreSQL cannot store a NUL").to_string();
        assert!(error.contains("0x00"), "{error}");
        for r in good {
            assert_eq!(r?, Handled::Done);
        }
        assert_eq!(count("SELECT COUNT(*) FROM messages").await?, 65);
        assert!(e.messages("worcs", "p0").await?.is_empty());
    }
    e.drain().await?;
    let mails = e.mails();
    let expected = if e.ctx.db.get_database_backend() == sea_orm::DbBackend::Postgres {
        65
    } else {
        60
    };
    assert_eq!(mails.len(), expected);
    assert!(to(&mails, "sam@away.test").is_empty());
    Ok(())
}

/// The database refuses to record sends (a trigger) while the sender works a queue of 20 with one
/// connection: the round ends with the error, and no email is started once recording failed, so
/// most stay unsent and leased. Once the database records again and the leases end, every message
/// goes out and is recorded sent; an email sent while recording failed is sent again (SMTP offers
/// nothing better than at least once; its Message-ID is the same both times).
async fn sending_stops_when_sends_cannot_be_recorded(e: Env) -> Result<()> {
    let now = e.ctx.clock.now();
    // Enough that the round is still sending when its first record fails, on a busy machine.
    let n = 100;
    e.queue_acknowledgements("ref", n, now - chrono::Duration::minutes(1))
        .await?;
    let db = &e.inspect;
    let postgres = db.get_database_backend() == sea_orm::DbBackend::Postgres;
    let refuse = if postgres {
        "CREATE FUNCTION refuse_sent() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN RAISE EXCEPTION 'recording refused'; END $$;
         CREATE TRIGGER refuse_sent BEFORE UPDATE ON messages
           FOR EACH ROW WHEN (NEW.status = 'sent') EXECUTE FUNCTION refuse_sent()"
    } else {
        "CREATE TRIGGER refuse_sent BEFORE UPDATE ON messages WHEN NEW.status = 'sent'
           BEGIN SELECT RAISE(ABORT, 'recording refused'); END"
    };
    db.execute_unprepared(refuse).await?;
    let error = e
        .sender
        .send_due()
        .await
        .expect_err("recording is refused")
        .to_string();
    assert!(error.contains("recording refused"), "{error}");
    let during = e.mails().len();
    assert!(
        (1..n).contains(&during),
        "{during} emails sent while recording failed"
    );
    assert_eq!(
        e.count_status("queued").await?,
        n as i64,
        "nothing recorded"
    );

    db.execute_unprepared(if postgres {
        "DROP TRIGGER refuse_sent ON messages"
    } else {
        "DROP TRIGGER refuse_sent"
    })
    .await?;
    assert_eq!(e.sender.send_due().await?, 0, "leased until the lease ends");
    e.clock.advance(chrono::Duration::minutes(3));
    e.drain().await?;
    assert_eq!(e.count_status("sent").await?, n as i64);
    let mails = e.mails();
    assert_eq!(mails.len(), n + during);
    for i in 0..n {
        assert!(!to(&mails, &format!("ref-{i}@school.test")).is_empty());
    }
    Ok(())
}

// ---------------------------------------------------------------- events

fn received(ns: &str, tenant: &str, service_event: &str, id: &str, payload: Vec<u8>) -> Received {
    let mut headers = BTreeMap::new();
    headers.insert("Eh-Id".to_string(), id.to_string());
    Received {
        subject: format!("{ns}.{tenant}.{service_event}"),
        headers,
        payload: payload.into(),
        delivered: 1,
        stream_seq: 1,
    }
}

fn event_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn referral_received(ns: &str, tenant: &str, referral_id: &str, referrer_email: &str) -> Received {
    referral_received_from(ns, tenant, referral_id, referrer_email, "Pat Teacher")
}

fn referral_received_from(
    ns: &str,
    tenant: &str,
    referral_id: &str,
    referrer_email: &str,
    referrer_name: &str,
) -> Received {
    let ev = intake::ReferralReceived {
        referral_id: referral_id.into(),
        family_id: format!("fam-{referral_id}"),
        received_at: "2026-03-02T08:00:00Z".into(),
        referral: Some(intake::Referral {
            source: Some(intake::Source {
                system: "hub".into(),
                reference: format!("R-{referral_id}"),
            }),
            referrer: Some(intake::Referrer {
                name: referrer_name.into(),
                agency: "Worcester Primary".into(),
                email: Some(referrer_email.into()),
                phone: Some("01905 765432".into()),
                ..Default::default()
            }),
            children: vec![intake::Child {
                given_name: CHILD.into(),
                family_name: FAMILY.into(),
                ..Default::default()
            }],
            family_members: vec![
                intake::FamilyMember {
                    given_name: "Jo".into(),
                    family_name: FAMILY.into(),
                    relationship: "mother".into(),
                    parental_responsibility: Some(true),
                    email: Some("jo@home.test".into()),
                    safe_to_contact: Some(true),
                    ..Default::default()
                },
                intake::FamilyMember {
                    given_name: "Sam".into(),
                    family_name: FAMILY.into(),
                    relationship: "father".into(),
                    parental_responsibility: Some(true),
                    email: Some("sam@away.test".into()),
                    safe_to_contact: Some(false),
                    ..Default::default()
                },
            ],
            concerns: Some("Leo has been missing school and seems frightened".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    received(
        ns,
        tenant,
        "intake.referral_received",
        &event_id(),
        ev.encode_to_vec(),
    )
}

fn screening(ns: &str, tenant: &str, referral_id: &str, outcome: &str, email: &str) -> Received {
    let ev = intake::ScreeningDecided {
        case_id: format!("case-{referral_id}"),
        referral_id: referral_id.into(),
        family_id: format!("fam-{referral_id}"),
        outcome: outcome.into(),
        reasons: vec![format!("age: child 1 ({CHILD}) is 7; in range 0-18")],
        rule_version: "worcs-2026.1".into(),
        advice: if outcome == "advice_and_signpost" {
            "Worcestershire Family Hubs run parenting courses: see the Family Hub directory.".into()
        } else {
            String::new()
        },
        missing: if outcome == "more_information_needed" {
            vec![
                "/children/0/date_of_birth".into(),
                "/address/postcode".into(),
            ]
        } else {
            Vec::new()
        },
        decided_at: "2026-03-02T11:00:00Z".into(),
        referrer: Some(intake::Referrer {
            name: "Pat Teacher".into(),
            agency: "Worcester Primary".into(),
            email: Some(email.into()),
            ..Default::default()
        }),
        source_system: "hub".into(),
        source_reference: format!("R-{referral_id}"),
        ..Default::default()
    };
    received(
        ns,
        tenant,
        "intake.screening_decided",
        &event_id(),
        ev.encode_to_vec(),
    )
}

fn case_ref(referral_id: &str, referrer_email: &str, referrer_safe: bool) -> cw::CaseRef {
    cw::CaseRef {
        case_id: format!("case-{referral_id}"),
        family_id: format!("fam-{referral_id}"),
        referral_id: referral_id.into(),
        source_system: "hub".into(),
        source_reference: format!("R-{referral_id}"),
        route: "upstream_event".into(),
        referrer: Some(cw::Contact {
            name: "Pat Teacher".into(),
            email: referrer_email.into(),
            safe_to_contact: referrer_safe,
            relationship: "referrer".into(),
            parental_responsibility: false,
            person_id: String::new(),
        }),
        referrer_agency: "Worcester Primary".into(),
    }
}

fn stepped_up(ns: &str, tenant: &str, case: cw::CaseRef, reason: &str) -> Received {
    let ev = cw::CaseSteppedUp {
        case: Some(case),
        reason: reason.into(),
        significant_harm_risk: true,
        at: "2026-03-02T09:00:00Z".into(),
    };
    received(
        ns,
        tenant,
        "casework.case_stepped_up",
        &event_id(),
        ev.encode_to_vec(),
    )
}

fn parent(name: &str, email: &str, safe: bool, pr: bool) -> cw::Contact {
    cw::Contact {
        name: name.into(),
        email: email.into(),
        safe_to_contact: safe,
        relationship: if pr { "mother" } else { "grandmother" }.into(),
        parental_responsibility: pr,
        person_id: String::new(),
    }
}

fn consent_requested(
    ns: &str,
    tenant: &str,
    case: cw::CaseRef,
    family: Vec<cw::Contact>,
) -> Received {
    let ev = cw::ConsentRequested {
        case: Some(case),
        family,
        close_due_at: "2026-03-30T09:00:00Z".into(),
        at: "2026-03-09T09:00:00Z".into(),
    };
    received(
        ns,
        tenant,
        "casework.consent_requested",
        &event_id(),
        ev.encode_to_vec(),
    )
}

fn breached(ns: &str, tenant: &str, case: cw::CaseRef, clock: &str) -> Received {
    let ev = cw::ServiceLevelBreached {
        case: Some(case),
        clock: clock.into(),
        due_at: "2026-03-03T09:00:00Z".into(),
        state: "screening".into(),
        at: "2026-03-03T09:00:01Z".into(),
    };
    received(
        ns,
        tenant,
        "casework.service_level_breached",
        &event_id(),
        ev.encode_to_vec(),
    )
}

async fn handle(h: &dyn Handler, msg: &Received) -> Result<Handled> {
    h.handle(msg).await.map_err(|e| anyhow::anyhow!("{e}"))
}

// ---------------------------------------------------------------- scenarios

/// Each outcome reaches the referrer: accepted; advice with the advice text; more information
/// with what is missing in plain words. The screening reasons (which name the child) never do.
async fn screening_outcomes_reach_the_referrer(e: Env) -> Result<()> {
    let ns = e.ns();
    let h = e.handlers();
    for (referral, outcome) in [
        ("s1", "accepted_for_early_help"),
        ("s2", "advice_and_signpost"),
        ("s3", "more_information_needed"),
    ] {
        let msg = screening(&ns, "worcs", referral, outcome, "Pat@School.test");
        assert_eq!(handle(&h.screening, &msg).await?, Handled::Done);
        assert_eq!(handle(&h.screening, &msg).await?, Handled::Duplicate);
    }
    e.drain().await?;
    let mails = e.mails();
    assert_eq!(mails.len(), 3, "{mails:#?}");
    for m in &mails {
        assert_eq!(m.to, ["pat@school.test"]);
        m.assert_no_child_names();
        assert!(
            !m.body.contains("in range"),
            "no screening reasons: {}",
            m.body
        );
        assert!(m.body.starts_with("Dear Pat Teacher,"), "{}", m.body);
    }
    let by_ref = |r: &str| {
        mails
            .iter()
            .find(|m| m.subject.contains(&format!("(R-{r})")))
            .cloned()
            .with_context(|| format!("a mail about R-{r}"))
    };
    let accepted = by_ref("s1")?;
    assert!(accepted.subject.contains("accepted for Early Help"));
    assert!(accepted.body.contains("case-s1"));
    let advice = by_ref("s2")?;
    assert!(advice.subject.contains("advice and signposting"));
    assert!(
        advice
            .body
            .contains("Worcestershire Family Hubs run parenting courses"),
        "{}",
        advice.body
    );
    let more = by_ref("s3")?;
    assert!(more.subject.contains("more information needed"));
    assert!(
        more.body.contains(
            "- the date of birth of the first child in your request\n- the family's postcode"
        ),
        "{}",
        more.body
    );
    for r in ["s1", "s2", "s3"] {
        let m = e
            .message("worcs", r, "screening_outcome", "pat@school.test")
            .await?;
        assert_eq!(m.status, "sent");
        assert!(m.sent_at.is_some());
    }
    Ok(())
}

/// `referral_acknowledgement` and `screening_outcome`: the referrer's address is on the tenant's
/// suppression list (a family member's unsafe address in an earlier referral), so nothing is sent
/// and both messages are on record as suppressed. (The referrer carries no `safe_to_contact` in
/// intake's events: the suppression list is the only way they are marked unsafe.)
async fn referrer_on_the_suppression_list_gets_nothing_from_intake_events(e: Env) -> Result<()> {
    let ns = e.ns();
    let h = e.handlers();
    // Sam's address is unsafe in this referral; the referrer of the next one shares it.
    let first = referral_received(&ns, "worcs", "u1", "pat@school.test");
    assert_eq!(handle(&h.referral, &first).await?, Handled::Done);
    let second = referral_received(&ns, "worcs", "u2", "Sam@Away.test");
    assert_eq!(handle(&h.referral, &second).await?, Handled::Done);
    let msg = screening(
        &ns,
        "worcs",
        "u2",
        "accepted_for_early_help",
        "sam@away.test",
    );
    assert_eq!(handle(&h.screening, &msg).await?, Handled::Done);
    e.drain().await?;
    let mails = e.mails();
    assert!(to(&mails, "sam@away.test").is_empty(), "{mails:#?}");
    assert_eq!(mails.len(), 1, "only u1's acknowledgement: {mails:#?}");
    mails[0].assert_no_child_names();
    for template in ["referral_acknowledgement", "screening_outcome"] {
        let m = e.message("worcs", "u2", template, "sam@away.test").await?;
        assert_eq!(m.status, "suppressed", "{template}");
        assert!(m.sent_at.is_none());
    }
    Ok(())
}

/// `step_up_front_door` goes before a backlog: 70 acknowledgements are queued (more than one
/// round of the sender), then a step-up arrives; the first round sends the front door's message.
/// It carries the case, the referral's reference and how to reach the referrer (the phone number
/// from `referral_received`), and the reason cleaned of the child's name.
async fn the_front_door_is_told_first_without_names(e: Env) -> Result<()> {
    let ns = e.ns();
    let h = e.handlers();
    assert_eq!(
        handle(
            &h.referral,
            &referral_received(&ns, "worcs", "f1", "pat@school.test")
        )
        .await?,
        Handled::Done
    );
    e.drain().await?;
    let before = e.smtp.messages().len();
    let now = e.ctx.clock.now();
    let backlog = eh_notifications::sender::DUE_BATCH + 10;
    e.queue_acknowledgements(
        "backlog",
        backlog as usize,
        now - chrono::Duration::minutes(10),
    )
    .await?;
    let reason = format!("Teacher reports {CHILD} {FAMILY} has an unexplained injury");
    let msg = stepped_up(
        &ns,
        "worcs",
        case_ref("f1", "pat@school.test", true),
        &reason,
    );
    assert_eq!(handle(&h.step_up, &msg).await?, Handled::Done);
    assert_eq!(handle(&h.step_up, &msg).await?, Handled::Duplicate);

    // One round of the sender: the step-up is in it, though more older messages wait than a
    // round takes.
    e.sender.send_due().await?;
    let door = e
        .message(
            "worcs",
            "case-f1",
            "step_up_front_door",
            "front-door@worcs.test",
        )
        .await?;
    assert_eq!(
        door.status, "sent",
        "the front door's message went in the first round"
    );
    assert_eq!(door.priority, store::PRIORITY_URGENT);
    assert!(
        e.count_status("queued").await? > 0,
        "the backlog is more than one round, so the step-up went ahead of it"
    );
    assert!(e.smtp.messages().len() > before);

    e.drain().await?;
    let mails = e.mails();
    let front = to(&mails, "front-door@worcs.test");
    assert_eq!(front.len(), 1);
    let f = &front[0];
    f.assert_no_child_names();
    assert!(f.subject.starts_with("URGENT"), "{}", f.subject);
    for part in [
        "Case: case-f1",
        "Referral: f1",
        "Referral reference: hub R-f1",
        "Referrer: Pat Teacher",
        "Agency: Worcester Primary",
        "Phone: 01905 765432",
        "Reason: Teacher reports [name removed] [name removed] has an unexplained injury",
        "Significant harm risk reported: yes",
    ] {
        assert!(f.body.contains(part), "{part:?} in {}", f.body);
    }
    assert!(!f.body.contains("frightened"), "no concerns by email");
    let referrer = to(&mails, "pat@school.test");
    let told: Vec<&Mail> = referrer
        .iter()
        .filter(|m| m.subject.contains("has gone to the front door"))
        .collect();
    assert_eq!(told.len(), 1, "{referrer:#?}");
    told[0].assert_no_child_names();
    let m = e
        .message("worcs", "case-f1", "step_up_referrer", "pat@school.test")
        .await?;
    assert_eq!((m.status.as_str(), m.priority), ("sent", 0));
    Ok(())
}

/// `step_up_referrer`: a referrer the event marks unsafe is never written to (recorded as
/// suppressed, address onto the suppression list); a referrer whose address is on the list is
/// suppressed at the point of send. The front door is told either way.
async fn step_up_referrer_marked_unsafe_gets_nothing(e: Env) -> Result<()> {
    let ns = e.ns();
    let h = e.handlers();
    let msg = stepped_up(
        &ns,
        "worcs",
        case_ref("x1", "unsafe@ref.test", false),
        "risk",
    );
    assert_eq!(handle(&h.step_up, &msg).await?, Handled::Done);
    store::suppress(
        &e.inspect,
        "worcs",
        "listed@ref.test",
        "known to a perpetrator",
        e.ctx.clock.now(),
    )
    .await?;
    let msg = stepped_up(
        &ns,
        "worcs",
        case_ref("x2", "Listed@Ref.test", true),
        "risk",
    );
    assert_eq!(handle(&h.step_up, &msg).await?, Handled::Done);
    e.drain().await?;
    let mails = e.mails();
    assert!(to(&mails, "unsafe@ref.test").is_empty() && to(&mails, "listed@ref.test").is_empty());
    assert_eq!(to(&mails, "front-door@worcs.test").len(), 2);
    let event_unsafe = e
        .message("worcs", "case-x1", "step_up_referrer", "unsafe@ref.test")
        .await?;
    assert_eq!(event_unsafe.status, "suppressed");
    assert!(
        store::is_suppressed(&e.inspect, "worcs", "unsafe@ref.test")
            .await?
            .is_some(),
        "the event's unsafe address joined the suppression list"
    );
    let listed = e
        .message("worcs", "case-x2", "step_up_referrer", "listed@ref.test")
        .await?;
    assert_eq!(listed.status, "suppressed");
    assert_eq!(listed.last_error.as_deref(), Some("known to a perpetrator"));
    Ok(())
}

/// `step_up_front_door` and `service_level_breach`: even the council's own mailbox is refused at
/// the point of send when it is on the suppression list.
async fn council_mailboxes_on_the_suppression_list_get_nothing(e: Env) -> Result<()> {
    let ns = e.ns();
    let h = e.handlers();
    for a in ["front-door@worcs.test", "EH-Manager@worcs.test"] {
        store::suppress(
            &e.inspect,
            "worcs",
            a,
            "mailbox compromised",
            e.ctx.clock.now(),
        )
        .await?;
    }
    let case = case_ref("c1", "pat@school.test", true);
    assert_eq!(
        handle(&h.step_up, &stepped_up(&ns, "worcs", case.clone(), "risk")).await?,
        Handled::Done
    );
    assert_eq!(
        handle(
            &h.breach,
            &breached(&ns, "worcs", case, "screening_decision")
        )
        .await?,
        Handled::Done
    );
    e.drain().await?;
    let mails = e.mails();
    assert!(to(&mails, "front-door@worcs.test").is_empty(), "{mails:#?}");
    assert!(to(&mails, "eh-manager@worcs.test").is_empty(), "{mails:#?}");
    assert_eq!(
        to(&mails, "pat@school.test").len(),
        1,
        "the referrer is still told"
    );
    for (template, to) in [
        ("step_up_front_door", "front-door@worcs.test"),
        ("service_level_breach", "eh-manager@worcs.test"),
    ] {
        let m = e.message("worcs", "case-c1", template, to).await?;
        assert_eq!(m.status, "suppressed", "{template}");
    }
    Ok(())
}

/// `consent_request`: the safe parent is asked; the parent the event marks unsafe is not (a
/// suppressed message, and their address joins the list); a parent whose address is already on
/// the list is refused at the point of send; a grandparent without parental responsibility is not
/// asked. The email names nobody.
async fn consent_is_asked_of_safe_parents_only(e: Env) -> Result<()> {
    let ns = e.ns();
    let h = e.handlers();
    store::suppress(
        &e.inspect,
        "worcs",
        "listed@home.test",
        "court order",
        e.ctx.clock.now(),
    )
    .await?;
    let family = vec![
        parent(&format!("Jo {FAMILY}"), "jo@home.test", true, true),
        parent(&format!("Sam {FAMILY}"), "sam@away.test", false, true),
        parent(&format!("Alex {FAMILY}"), "listed@home.test", true, true),
        parent(&format!("Gran {FAMILY}"), "gran@home.test", true, false),
    ];
    let msg = consent_requested(
        &ns,
        "worcs",
        case_ref("k1", "pat@school.test", true),
        family,
    );
    assert_eq!(handle(&h.consent, &msg).await?, Handled::Done);
    assert_eq!(handle(&h.consent, &msg).await?, Handled::Duplicate);
    e.drain().await?;
    let mails = e.mails();
    assert_eq!(mails.len(), 1, "{mails:#?}");
    let m = &mails[0];
    assert_eq!(m.to, ["jo@home.test"]);
    m.assert_no_child_names();
    assert!(
        !m.text().contains("Jo") && !m.text().contains("Pat"),
        "{}",
        m.text()
    );
    assert!(
        m.body.contains("case-k1") && m.body.contains("30 March 2026"),
        "{}",
        m.body
    );
    assert!(m.subject.contains("Worcestershire County Council"));
    assert_eq!(
        e.message("worcs", "case-k1", "consent_request", "jo@home.test")
            .await?
            .status,
        "sent"
    );
    let unsafe_ = e
        .message("worcs", "case-k1", "consent_request", "sam@away.test")
        .await?;
    assert_eq!(unsafe_.status, "suppressed");
    assert!(
        store::is_suppressed(&e.inspect, "worcs", "sam@away.test")
            .await?
            .is_some()
    );
    let listed = e
        .message("worcs", "case-k1", "consent_request", "listed@home.test")
        .await?;
    assert_eq!(
        (listed.status.as_str(), listed.last_error.as_deref()),
        ("suppressed", Some("court order"))
    );
    let all = e.messages("worcs", "case-k1").await?;
    assert!(all.iter().all(|m| m.recipient != "gran@home.test"));
    Ok(())
}

/// A referral naming the family with intake's person ids: the mother `p-jo` (safe) and the
/// father `p-sam`, with `sam_email` and `sam_safe` as given; the referrer's address is
/// `referrer_email`.
fn family_referral(
    ns: &str,
    referral_id: &str,
    referrer_email: &str,
    sam_email: Option<&str>,
    sam_safe: Option<bool>,
) -> Received {
    let ev = intake::ReferralReceived {
        referral_id: referral_id.into(),
        family_id: "fam-late".into(),
        received_at: "2026-03-02T08:00:00Z".into(),
        referral: Some(intake::Referral {
            source: Some(intake::Source {
                system: "hub".into(),
                reference: format!("R-{referral_id}"),
            }),
            referrer: Some(intake::Referrer {
                name: "Someone".into(),
                agency: "family".into(),
                email: Some(referrer_email.into()),
                ..Default::default()
            }),
            family_members: vec![
                intake::FamilyMember {
                    given_name: "Jo".into(),
                    family_name: FAMILY.into(),
                    relationship: "mother".into(),
                    parental_responsibility: Some(true),
                    email: Some("jo@home.test".into()),
                    safe_to_contact: Some(true),
                    ..Default::default()
                },
                intake::FamilyMember {
                    given_name: "Sam".into(),
                    family_name: FAMILY.into(),
                    relationship: "father".into(),
                    parental_responsibility: Some(true),
                    email: sam_email.map(String::from),
                    safe_to_contact: sam_safe,
                    ..Default::default()
                },
            ],
            ..Default::default()
        }),
        family_members: ["p-jo", "p-sam"]
            .iter()
            .map(|p| intake::PersonRef {
                person_id: (*p).into(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    received(
        ns,
        "worcs",
        "intake.referral_received",
        &event_id(),
        ev.encode_to_vec(),
    )
}

/// Issue 15's journey at the notifications end: the father is marked unsafe by a later
/// referral that does not repeat his address, after a consent request to him was queued. At the
/// moment of sending, by his person id and by every address held for him, nothing reaches him:
/// the queued consent request, one to an address only that event gave, and every referrer
/// template to his address (a self-referral) are recorded `suppressed` with a reason naming ids
/// only. A later referral that does not say he is unsafe clears nothing.
async fn a_person_marked_unsafe_later_gets_nothing_at_any_address(e: Env) -> Result<()> {
    let ns = e.ns();
    let h = e.handlers();
    // Referral 1: the father's own (a self-referral), giving his address; he is safe.
    let first = family_referral(&ns, "l1", "sam@away.test", Some("sam@away.test"), None);
    assert_eq!(handle(&h.referral, &first).await?, Handled::Done);
    e.drain().await?;
    assert_eq!(to(&e.mails(), "sam@away.test").len(), 1, "acknowledged");
    // The chase, queued before anyone says he is unsafe.
    let case = case_ref("l1", "sam@away.test", true);
    let contact = |name: &str, person: &str, email: &str| cw::Contact {
        person_id: person.into(),
        ..parent(name, email, true, true)
    };
    let chase = consent_requested(
        &ns,
        "worcs",
        case.clone(),
        vec![
            contact("Jo", "p-jo", "jo@home.test"),
            contact("Sam", "p-sam", "sam@away.test"),
        ],
    );
    assert_eq!(handle(&h.consent, &chase).await?, Handled::Done);
    // Referral 2 marks him unsafe, without his address.
    let second = family_referral(&ns, "l2", "pat@school.test", None, Some(false));
    assert_eq!(handle(&h.referral, &second).await?, Handled::Done);
    assert!(
        store::is_person_suppressed(&e.inspect, "worcs", "p-sam")
            .await?
            .is_some()
    );
    // Referral 3, his own again, says nothing about safety: it clears nothing.
    let third = family_referral(&ns, "l3", "Sam@Away.test", Some("sam@away.test"), None);
    assert_eq!(handle(&h.referral, &third).await?, Handled::Done);
    // Everything else that can reach him: the outcome and a step-up to the referrer (him), and
    // a consent request to an address no event marked unsafe.
    let outcome = screening(
        &ns,
        "worcs",
        "l1",
        "accepted_for_early_help",
        "sam@away.test",
    );
    assert_eq!(handle(&h.screening, &outcome).await?, Handled::Done);
    let step_up = stepped_up(&ns, "worcs", case.clone(), "risk");
    assert_eq!(handle(&h.step_up, &step_up).await?, Handled::Done);
    let later = consent_requested(
        &ns,
        "worcs",
        case,
        vec![contact("Sam", "p-sam", "sam@new.test")],
    );
    assert_eq!(handle(&h.consent, &later).await?, Handled::Done);
    e.drain().await?;

    let mails = e.mails();
    assert_eq!(
        to(&mails, "sam@away.test").len(),
        1,
        "only the acknowledgement sent before he was marked unsafe: {mails:#?}"
    );
    assert!(to(&mails, "sam@new.test").is_empty(), "{mails:#?}");
    assert_eq!(to(&mails, "jo@home.test").len(), 1, "the mother is asked");
    assert_eq!(
        to(&mails, "pat@school.test").len(),
        1,
        "referral 2 acknowledged"
    );
    assert_eq!(to(&mails, "front-door@worcs.test").len(), 1);
    let mut suppressed = Vec::new();
    for (related, template, recipient) in [
        ("case-l1", "consent_request", "sam@away.test"),
        ("case-l1", "consent_request", "sam@new.test"),
        ("l3", "referral_acknowledgement", "sam@away.test"),
        ("l1", "screening_outcome", "sam@away.test"),
        ("case-l1", "step_up_referrer", "sam@away.test"),
    ] {
        let m = e.message("worcs", related, template, recipient).await?;
        let reason = m.last_error.clone().unwrap_or_default();
        ensure!(
            m.status == "suppressed",
            "{template} to {recipient}: {}",
            m.status
        );
        ensure!(
            reason.contains("p-sam") && reason.contains("l2"),
            "{template}: the reason names the person and the referral: {reason}"
        );
        ensure!(
            !reason.contains('@') && !reason.contains("Sam"),
            "{template}: no personal data in the reason: {reason}"
        );
        suppressed.push(template);
    }
    assert_eq!(suppressed.len(), 5);
    Ok(())
}

/// A correction: a practitioner confirms that the grey-zone father a referral marked unsafe
/// (`p-new`, no address) is the father held with an address (`p-held`). The consent request
/// queued for `p-held` is withheld when it is sent, and so is anything to his address.
async fn a_confirmed_merge_suppresses_the_person_under_both_ids(e: Env) -> Result<()> {
    let ns = e.ns();
    let h = e.handlers();
    let case = case_ref("m1", "pat@school.test", true);
    let held = cw::Contact {
        person_id: "p-held".into(),
        ..parent("Sam", "sam@held.test", true, true)
    };
    let chase = consent_requested(&ns, "worcs", case.clone(), vec![held]);
    assert_eq!(handle(&h.consent, &chase).await?, Handled::Done);
    let merged = intake::PeopleMerged {
        person_id: "p-held".into(),
        merged_person_id: "p-new".into(),
        family_id: "fam-m1".into(),
        unsafe_to_contact: true,
        candidate_id: "mc-1".into(),
        at: "2026-03-02T10:00:00Z".into(),
        ..Default::default()
    };
    let msg = received(
        &ns,
        "worcs",
        "intake.people_merged",
        &event_id(),
        merged.encode_to_vec(),
    );
    assert_eq!(handle(&h.merged, &msg).await?, Handled::Done);
    assert_eq!(handle(&h.merged, &msg).await?, Handled::Duplicate);
    let outcome = screening(
        &ns,
        "worcs",
        "m1",
        "accepted_for_early_help",
        "Sam@Held.test",
    );
    assert_eq!(handle(&h.screening, &outcome).await?, Handled::Done);
    e.drain().await?;
    assert!(
        to(&e.mails(), "sam@held.test").is_empty(),
        "{:#?}",
        e.mails()
    );
    for (related, template) in [("case-m1", "consent_request"), ("m1", "screening_outcome")] {
        let m = e
            .message("worcs", related, template, "sam@held.test")
            .await?;
        let reason = m.last_error.unwrap_or_default();
        ensure!(m.status == "suppressed", "{template}: {}", m.status);
        ensure!(
            reason.contains("p-held") && reason.contains("mc-1") && !reason.contains('@'),
            "{template}: {reason}"
        );
    }
    for p in ["p-held", "p-new"] {
        ensure!(
            store::is_person_suppressed(&e.inspect, "worcs", p)
                .await?
                .is_some()
        );
    }
    // A merge of people who are safe suppresses nobody.
    let safe = intake::PeopleMerged {
        person_id: "p-a".into(),
        merged_person_id: "p-b".into(),
        unsafe_to_contact: false,
        ..merged
    };
    let msg = received(
        &ns,
        "worcs",
        "intake.people_merged",
        &event_id(),
        safe.encode_to_vec(),
    );
    assert_eq!(handle(&h.merged, &msg).await?, Handled::Done);
    ensure!(
        store::is_person_suppressed(&e.inspect, "worcs", "p-a")
            .await?
            .is_none()
    );
    Ok(())
}

/// `service_level_breach`: the team manager hears of each clock once.
async fn the_team_manager_hears_of_each_breach_once(e: Env) -> Result<()> {
    let ns = e.ns();
    let h = e.handlers();
    let case = case_ref("b1", "pat@school.test", true);
    let first = breached(&ns, "worcs", case.clone(), "screening_decision");
    assert_eq!(handle(&h.breach, &first).await?, Handled::Done);
    assert_eq!(handle(&h.breach, &first).await?, Handled::Duplicate);
    // The same breach republished under another event id is still one message.
    let mut again = first.clone();
    again.headers.insert("Eh-Id".into(), event_id());
    assert_eq!(handle(&h.breach, &again).await?, Handled::Done);
    let other = breached(&ns, "worcs", case, "consent_chase");
    assert_eq!(handle(&h.breach, &other).await?, Handled::Done);
    e.drain().await?;
    let mails = to(&e.mails(), "eh-manager@worcs.test");
    assert_eq!(mails.len(), 2, "{mails:#?}");
    let screening = mails
        .iter()
        .find(|m| m.subject.contains("front-door screening decision"))
        .context("the screening clock's mail")?;
    screening.assert_no_child_names();
    for part in [
        "case case-b1 ran out on 3 March 2026, 09:00 UTC",
        "Referral: b1 (hub R-b1)",
        "State: screening",
    ] {
        assert!(
            screening.body.contains(part),
            "{part:?} in {}",
            screening.body
        );
    }
    let rows = e.messages("worcs", "case-b1").await?;
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .all(|m| m.template == "service_level_breach" && m.status == "sent")
    );
    Ok(())
}

/// A council with no front-door or manager mailbox: the messages are on record as
/// undeliverable, with the reason, and nothing is sent — never dropped silently.
async fn missing_council_mailboxes_are_undeliverable(e: Env) -> Result<()> {
    let ns = e.ns();
    let h = e.handlers();
    let case = case_ref("m1", "pat@school.test", true);
    assert_eq!(
        handle(&h.step_up, &stepped_up(&ns, "worcs", case.clone(), "risk")).await?,
        Handled::Done
    );
    assert_eq!(
        handle(
            &h.breach,
            &breached(&ns, "worcs", case, "screening_decision")
        )
        .await?,
        Handled::Done
    );
    e.drain().await?;
    let mails = e.mails();
    assert_eq!(mails.len(), 1, "only the referrer: {mails:#?}");
    assert_eq!(mails[0].to, ["pat@school.test"]);
    for (template, key) in [
        ("step_up_front_door", "contacts.front_door_email"),
        ("service_level_breach", "contacts.team_manager_email"),
    ] {
        let m = e.message("worcs", "case-m1", template, "").await?;
        assert_eq!(m.status, "undeliverable", "{template}");
        let why = m.last_error.unwrap_or_default();
        assert!(why.contains(key) && why.contains("worcs"), "{why}");
    }
    Ok(())
}

/// `smtp.max_connections = 1`, as a configuration file would set it.
fn one_smtp_connection(s: &mut Settings) {
    let mut smtp = s
        .section("smtp")
        .map(Section::to_json)
        .unwrap_or_else(|| serde_json::json!({}));
    smtp["max_connections"] = serde_json::json!(1);
    let section = Section::from_json("smtp", smtp).expect("smtp section");
    s.sections.insert("smtp".into(), section);
}

/// Writes a council's section of notifications' settings, as a configuration file would.
fn set_section(t: &mut TenantSettings, key: &str, value: serde_json::Value) -> Result<()> {
    let section = Section::from_json(format!("tenants.x.{key}"), value)?;
    t.sections.insert(key.into(), section);
    Ok(())
}

async fn without_council_mailboxes(postgres: bool) -> Result<Env> {
    env_with(postgres, |s| {
        if let Some(t) = s.tenants.get_mut("worcs") {
            set_section(
                t,
                "contacts",
                serde_json::json!({"team_manager_email": "  "}),
            )
            .expect("contacts");
        }
    })
    .await
}

/// Two councils: worcs's events reach only worcs's mailboxes, in the built-in words and from the
/// platform's sender; staffs's reach only staffs's, in staffs's own templates and from staffs's
/// sender. A suppression in one council does not touch the other.
async fn tenants_are_kept_apart(e: Env) -> Result<()> {
    let ns = e.ns();
    let h = e.handlers();
    // staffs suppresses an address worcs's referrer uses; worcs is not bound by it.
    store::suppress(
        &e.inspect,
        "staffs",
        "pat@school.test",
        "staffs only",
        e.ctx.clock.now(),
    )
    .await?;
    for tenant in ["worcs", "staffs"] {
        let case = case_ref(&format!("{tenant}-1"), "pat@school.test", true);
        for msg in [
            stepped_up(&ns, tenant, case.clone(), "risk"),
            breached(&ns, tenant, case.clone(), "screening_decision"),
            screening(
                &ns,
                tenant,
                &format!("{tenant}-1"),
                "accepted_for_early_help",
                "pat@school.test",
            ),
        ] {
            let handler: &dyn Handler = if msg.subject.ends_with("case_stepped_up") {
                &h.step_up
            } else if msg.subject.ends_with("service_level_breached") {
                &h.breach
            } else {
                &h.screening
            };
            assert_eq!(handle(handler, &msg).await?, Handled::Done);
        }
    }
    e.drain().await?;
    let mails = e.mails();
    let staffs_boxes = ["front-door@staffs.test", "eh-manager@staffs.test"];
    let worcs_boxes = ["front-door@worcs.test", "eh-manager@worcs.test"];
    for m in &mails {
        m.assert_no_child_names();
        let staffs_mail = m.to.iter().any(|t| staffs_boxes.contains(&t.as_str()));
        if staffs_mail {
            assert_eq!(m.from, STAFFS_FROM, "{m:#?}");
            assert!(m.subject.starts_with("STAFFS "), "{m:#?}");
            assert!(!m.text().contains("worcs"), "{m:#?}");
        } else {
            assert_ne!(m.from, STAFFS_FROM, "{m:#?}");
            assert!(
                !m.text().contains("STAFFS") && !m.text().contains("Staffordshire"),
                "{m:#?}"
            );
            assert!(!m.text().contains("staffs-1"), "{m:#?}");
        }
    }
    for b in worcs_boxes.iter().chain(&staffs_boxes) {
        assert_eq!(to(&mails, b).len(), 1, "{b}: {mails:#?}");
    }
    for m in to(&mails, "front-door@staffs.test")
        .iter()
        .chain(&to(&mails, "eh-manager@staffs.test"))
    {
        assert!(
            m.body.contains("Staffordshire template for case-staffs-1"),
            "{m:#?}"
        );
    }
    for m in to(&mails, "front-door@worcs.test")
        .iter()
        .chain(&to(&mails, "eh-manager@worcs.test"))
    {
        assert!(m.body.contains("case-worcs-1"), "{m:#?}");
        assert!(!m.body.contains("case-staffs-1"), "{m:#?}");
    }
    // worcs's referrer gets both worcs mails; staffs's are suppressed by staffs's own list.
    let referrer = to(&mails, "pat@school.test");
    assert_eq!(referrer.len(), 2, "{referrer:#?}");
    assert!(referrer.iter().all(|m| m.text().contains("worcs-1")));
    for template in ["step_up_referrer", "screening_outcome"] {
        let related = if template == "screening_outcome" {
            "staffs-1"
        } else {
            "case-staffs-1"
        };
        let m = e
            .message("staffs", related, template, "pat@school.test")
            .await?;
        assert_eq!(m.status, "suppressed", "{template}");
    }
    // Each council's records are its own.
    assert!(e.messages("worcs", "case-staffs-1").await?.is_empty());
    assert!(e.messages("staffs", "case-worcs-1").await?.is_empty());
    Ok(())
}

/// Migration 11 rebuilds `messages`: a message recorded before it is kept, at normal priority.
async fn migrating_keeps_existing_messages(postgres: bool) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let url = if postgres {
        eh_testkit::fresh_database().await?
    } else {
        format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("n.sqlite").display()
        )
    };
    let db = eh_store::connect(&eh_store::Location {
        url,
        schema: postgres.then(|| "notifications".to_string()),
        max_connections: 1,
    })
    .await?;
    let before: Vec<_> = migrations()
        .into_iter()
        .filter(|m| m.version < 11)
        .collect();
    eh_store::migrate(&db, "notifications", &before).await?;
    // Written and read back in the system scope (the pool itself is in none).
    let look = eh_testkit::inspector_of(&db).await?;
    look.execute_raw(eh_store::stmt(
        db.get_database_backend(),
        "INSERT INTO messages (id, tenant, template, channel, recipient, related_id, subject, body,
           status, attempts, next_attempt_at, created_at)
         VALUES ('m-1', 'worcs', 'referral_acknowledgement', 'email', 'a@b.test', 'ref-1', 's', 'b',
           'queued', 0, $1, $1)",
        [Utc::now().into()],
    ))
    .await?;
    assert_eq!(
        eh_store::migrate(&db, "notifications", &migrations()).await?,
        migrations().iter().filter(|m| m.version >= 11).count()
    );
    let rows = store::for_related(&look, "worcs", "ref-1").await?;
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].id.as_str(), rows[0].priority), ("m-1", 0));
    // The old uniqueness still holds for a message without a dedupe key.
    let again = store::queue(
        &look,
        &store::NewMessage {
            tenant: "worcs",
            template: "referral_acknowledgement",
            recipient: "A@B.test",
            related_id: "ref-1",
            subject: "s",
            body: "b",
        },
        Utc::now(),
    )
    .await?;
    assert!(!again);
    Ok(())
}

#[tokio::test]
async fn sqlite_sending_stops_when_sends_cannot_be_recorded() -> Result<()> {
    sending_stops_when_sends_cannot_be_recorded(env_with(false, one_smtp_connection).await?).await
}

/// The database goes away while emails are going out, for longer than a few tries: the sender
/// starts no further email and keeps recording those sent until the database is back, so no
/// email goes out twice.
#[tokio::test]
async fn postgres_an_outage_while_sending_sends_no_email_twice() -> Result<()> {
    let e = env_behind_proxy(one_smtp_connection).await?;
    let proxy = e.proxy.as_ref().context("behind a proxy")?;
    let n = 100;
    let now = e.ctx.clock.now();
    e.queue_acknowledgements("ref", n, now - chrono::Duration::minutes(1))
        .await?;
    let outage = async {
        while e.smtp.messages().is_empty() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        proxy.cut();
        // Longer than the recorder's old three tries (0.7 s), shorter than the lease.
        tokio::time::sleep(Duration::from_secs(4)).await;
        proxy.mend();
    };
    let (recorded, ()) = tokio::join!(e.sender.send_due(), outage);
    let recorded = recorded?;
    let during = e.mails().len();
    assert!(
        (1..n).contains(&during),
        "{during} of {n} emails went out in the round the database went away in"
    );
    assert_eq!(recorded, during, "every email sent was recorded");
    assert_eq!(e.count_status("sent").await?, during as i64);
    // The rest, not started while the database was away, are due again at once (not when their
    // lease ends): they go now, each once.
    e.drain().await?;
    assert_eq!(e.count_status("sent").await?, n as i64);
    let mails = e.smtp.messages();
    let mut ids: Vec<String> = mails
        .iter()
        .filter_map(|m| m.header("Message-ID"))
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(mails.len(), n, "an email went out twice");
    assert_eq!(ids.len(), n, "every email has its own Message-ID");
    Ok(())
}

/// The database goes away just after a round claimed its messages: the round keeps them and
/// sends them once the database is back, not when their lease ends.
#[tokio::test]
async fn postgres_an_outage_after_a_claim_keeps_the_claimed_messages() -> Result<()> {
    let e = env_behind_proxy(|_| {}).await?;
    let proxy = e.proxy.as_ref().context("behind a proxy")?;
    let n = 10;
    let now = e.ctx.clock.now();
    e.queue_acknowledgements("ref", n, now - chrono::Duration::minutes(1))
        .await?;
    e.ctx
        .faults
        .hold(eh_notifications::sender::HOLD_AFTER_CLAIM);
    let outage = async {
        eh_testkit::eventually(Duration::from_secs(20), "the round's claim", || async {
            let claimed = e
                .inspect
                .query_one_raw(eh_store::stmt(
                    e.ctx.db.get_database_backend(),
                    "SELECT COUNT(*) FROM messages WHERE attempts = 1",
                    [],
                ))
                .await?
                .context("a count")?
                .try_get_by_index::<i64>(0)?;
            Ok((claimed == n as i64).then_some(()))
        })
        .await?;
        proxy.cut();
        e.ctx.faults.release_all();
        tokio::time::sleep(Duration::from_secs(3)).await;
        proxy.mend();
        anyhow::Ok(())
    };
    let (sent, waited) = tokio::join!(e.sender.send_due(), outage);
    waited?;
    assert_eq!(sent?, n, "the round sent what it had claimed");
    assert_eq!(e.count_status("sent").await?, n as i64);
    assert_eq!(e.smtp.messages().len(), n);
    Ok(())
}

#[tokio::test]
async fn postgres_sending_stops_when_sends_cannot_be_recorded() -> Result<()> {
    sending_stops_when_sends_cannot_be_recorded(env_with(true, one_smtp_connection).await?).await
}

#[tokio::test]
async fn sqlite_migrating_keeps_existing_messages() -> Result<()> {
    migrating_keeps_existing_messages(false).await
}

#[tokio::test]
async fn postgres_migrating_keeps_existing_messages() -> Result<()> {
    migrating_keeps_existing_messages(true).await
}

/// A council's template with an unknown placeholder stops the service at start, naming the key.
#[tokio::test]
async fn start_refuses_a_broken_council_template() -> Result<()> {
    let e = env_with(false, |s| {
        if let Some(t) = s.tenants.get_mut("worcs") {
            set_section(
                t,
                "templates",
                serde_json::json!({"consent_request": {"subject": "Consent for {{child_name}}", "body": "b"}}),
            )
            .expect("templates");
        }
    })
    .await?;
    let auth =
        eh_auth::Authenticator::from_settings(&e.ctx.settings, None).map_err(anyhow::Error::msg)?;
    let Err(err) = eh_notifications::start(e.ctx.clone(), &auth) else {
        anyhow::bail!("start accepted a template with {{{{child_name}}}}");
    };
    assert!(
        err.contains("tenants.worcs.templates.consent_request.subject")
            && err.contains("child_name"),
        "{err}"
    );
    Ok(())
}

/// The wiring of `start`: a step-up published on casework's stream reaches the front door's
/// mailbox through the consumer and the sender (embedded transport).
#[tokio::test]
async fn start_consumes_casework_events_and_sends() -> Result<()> {
    let e = env(false).await?;
    let ns = e.ns();
    let transport = e.ctx.transport.clone();
    transport
        .ensure_streams(&eh_notifications::streams(&ns))
        .await?;
    let auth =
        eh_auth::Authenticator::from_settings(&e.ctx.settings, None).map_err(anyhow::Error::msg)?;
    let _svc = eh_notifications::start(e.ctx.clone(), &auth).map_err(anyhow::Error::msg)?;
    let msg = stepped_up(&ns, "worcs", case_ref("w1", "", true), "risk");
    let envelope = eh_bus::Envelope::new(
        "earlyhelp.casework.v1.CaseSteppedUp",
        "worcs",
        "system:casework",
        Utc::now(),
    );
    transport
        .publish(&eh_bus::OutboundMessage::event(
            msg.subject.clone(),
            &envelope,
            msg.payload.to_vec(),
        ))
        .await?;
    let mails = e.smtp.wait_for(1, Duration::from_secs(20)).await?;
    let mail = Mail::parse(&mails[0]);
    assert_eq!(mail.to, ["front-door@worcs.test"]);
    assert!(mail.body.contains("case-w1"), "{}", mail.body);
    e.ctx.shutdown.cancel();
    e.ctx.tasks.close();
    e.ctx.tasks.wait().await;
    e.ctx.relay_shutdown.cancel();
    e.ctx.relay_tasks.close();
    e.ctx.relay_tasks.wait().await;
    Ok(())
}

/// The front door's email with the SMTP server refusing mail: the urgent sender takes it alone
/// (not the referrer's message beside it), tries it again and again past the attempts that fail an
/// ordinary message, never marks it failed, and once a minute has passed raises it once (the
/// event, the metrics); when the server takes mail again it goes.
async fn the_front_door_is_retried_without_end_and_raised_after_a_minute(e: Env) -> Result<()> {
    let ns = e.ns();
    let h = e.handlers();
    let urgent = Sender::urgent(
        e.ctx.clone(),
        Arc::new(Mailer::from_settings(&e.ctx.settings).map_err(anyhow::Error::msg)?),
    );
    let msg = stepped_up(
        &ns,
        "worcs",
        case_ref("u1", "pat@school.test", true),
        "risk",
    );
    assert_eq!(handle(&h.step_up, &msg).await?, Handled::Done);
    e.smtp.set_failing(true);
    let raised = |e: &Env| {
        e.ctx.metrics.encode().lines().find_map(|l| {
            l.starts_with("earlyhelp_front_door_overdue_total{tenant=\"worcs\"}")
                .then(|| l.rsplit(' ').next().unwrap_or("").to_string())
        })
    };
    assert_eq!(
        eh_notifications::urgent::check_overdue(&e.ctx).await?,
        0,
        "not overdue yet"
    );
    let tries = eh_notifications::sender::MAX_ATTEMPTS + 2;
    for _ in 0..tries {
        assert_eq!(
            urgent.send_due().await?,
            1,
            "one attempt: the front door's only"
        );
        e.clock.advance(chrono::Duration::milliseconds(
            e.ctx.settings.bus.retry_max_ms as i64 + 1,
        ));
    }
    let door = e
        .message(
            "worcs",
            "case-u1",
            "step_up_front_door",
            "front-door@worcs.test",
        )
        .await?;
    assert_eq!((door.status.as_str(), door.attempts), ("queued", tries));
    let referrer = e
        .message("worcs", "case-u1", "step_up_referrer", "pat@school.test")
        .await?;
    assert_eq!(
        referrer.attempts, 0,
        "the urgent sender sends urgent messages only"
    );

    // A minute after it was queued, whatever the retry settings made of the attempts' times.
    e.clock.advance(eh_notifications::urgent::OVERDUE_AFTER);
    assert_eq!(eh_notifications::urgent::check_overdue(&e.ctx).await?, 1);
    assert_eq!(
        eh_notifications::urgent::check_overdue(&e.ctx).await?,
        0,
        "raised once"
    );
    assert_eq!(raised(&e).as_deref(), Some("1"));
    let outbox = e
        .inspect
        .query_one_raw(eh_store::stmt(
            e.ctx.db.get_database_backend(),
            "SELECT COUNT(*) FROM eh_outbox WHERE subject = $1",
            [eh_proto::catalogue::FRONT_DOOR_OVERDUE
                .subject(&ns, "worcs")
                .into()],
        ))
        .await?
        .context("a count")?;
    assert_eq!(
        outbox.try_get_by_index::<i64>(0)?,
        1,
        "front_door_overdue on the bus once"
    );
    assert!(
        e.ctx
            .metrics
            .encode()
            .contains("earlyhelp_front_door_unsent{tenant=\"worcs\"} 1")
    );

    e.smtp.set_failing(false);
    assert_eq!(urgent.send_due().await?, 1);
    let door = e
        .message(
            "worcs",
            "case-u1",
            "step_up_front_door",
            "front-door@worcs.test",
        )
        .await?;
    assert_eq!(door.status, "sent");
    assert_eq!(to(&e.mails(), "front-door@worcs.test").len(), 1);
    eh_notifications::urgent::check_overdue(&e.ctx).await?;
    assert!(
        e.ctx
            .metrics
            .encode()
            .contains("earlyhelp_front_door_unsent{tenant=\"worcs\"} 0")
    );
    Ok(())
}

/// A sender that dies after claiming its round (a crashed pod) holds its messages only until its
/// short lease ends: another sender sends them seconds later, each once.
async fn a_dead_senders_claims_are_sent_within_seconds(e: Env) -> Result<()> {
    let now = e.ctx.clock.now();
    let n = 3;
    e.queue_acknowledgements("ref", n, now - chrono::Duration::minutes(1))
        .await?;
    e.ctx
        .faults
        .hold(eh_notifications::sender::HOLD_AFTER_CLAIM);
    let dying = Sender::new(
        e.ctx.clone(),
        Arc::new(Mailer::from_settings(&e.ctx.settings).map_err(anyhow::Error::msg)?),
    );
    let round = tokio::spawn(async move { dying.send_due().await });
    eh_testkit::eventually(Duration::from_secs(20), "the round's claim", || async {
        let claimed = e
            .inspect
            .query_one_raw(eh_store::stmt(
                e.ctx.db.get_database_backend(),
                "SELECT COUNT(*) FROM messages WHERE attempts = 1",
                [],
            ))
            .await?
            .context("a count")?
            .try_get_by_index::<i64>(0)?;
        Ok((claimed == n as i64).then_some(()))
    })
    .await?;
    // The process dies holding its claims.
    round.abort();
    let _ = round.await;
    e.ctx.faults.release_all();
    assert_eq!(
        e.sender.send_due().await?,
        0,
        "claimed until the lease ends"
    );
    e.clock
        .advance(eh_notifications::sender::LEASE + chrono::Duration::seconds(1));
    e.drain().await?;
    assert_eq!(e.count_status("sent").await?, n as i64);
    assert_eq!(e.mails().len(), n, "each once");
    Ok(())
}

/// A message that fails for good is a task for the council's team manager, listed until
/// someone resolves it (saying what was done); only team managers see or resolve tasks, and only
/// their own council's.
async fn a_message_that_fails_for_good_is_a_task_for_the_team_manager(e: Env) -> Result<()> {
    use eh_proto::notifications::v1 as pb;
    use eh_proto::notifications::v1::notifications_service_server::NotificationsService;
    let now = e.ctx.clock.now();
    e.queue_acknowledgements("ref", 1, now - chrono::Duration::minutes(1))
        .await?;
    e.smtp.set_failing(true);
    for _ in 0..eh_notifications::sender::MAX_ATTEMPTS {
        e.sender.send_due().await?;
        e.clock.advance(chrono::Duration::milliseconds(
            e.ctx.settings.bus.retry_max_ms as i64 + 1,
        ));
    }
    assert_eq!(e.count_status("failed").await?, 1);
    let api = eh_notifications::grpc::NotificationsApi {
        db: e.ctx.db.clone(),
        auditor: eh_auth::Auditor::new(e.ctx.db.clone()),
        settings: e.ctx.settings.clone(),
    };
    let as_who = |tenant: &str, roles: &[&str]| eh_auth::Principal::Person {
        tenant: tenant.into(),
        subject: "tm-1".into(),
        agency: None,
        roles: roles.iter().map(|r| (*r).to_string()).collect(),
    };
    fn call<T>(p: eh_auth::Principal, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.extensions_mut().insert(p);
        r
    }
    let list = |p| {
        call(
            p,
            pb::ListTasksRequest {
                tenant: "worcs".into(),
                status: "open".into(),
            },
        )
    };
    let tasks = api
        .list_tasks(list(as_who("worcs", &["team_manager"])))
        .await?
        .into_inner()
        .tasks;
    assert_eq!(tasks.len(), 1);
    assert_eq!(
        (
            tasks[0].kind.as_str(),
            tasks[0].template.as_str(),
            tasks[0].status.as_str()
        ),
        ("message_failed", "referral_acknowledgement", "open")
    );
    for (who, code) in [
        (
            as_who("worcs", &["practitioner"]),
            tonic::Code::PermissionDenied,
        ),
        (
            as_who("staffs", &["team_manager"]),
            tonic::Code::PermissionDenied,
        ),
    ] {
        assert_eq!(api.list_tasks(list(who)).await.unwrap_err().code(), code);
    }
    let resolve = |note: &str| {
        call(
            as_who("worcs", &["team_manager"]),
            pb::ResolveTaskRequest {
                tenant: "worcs".into(),
                task_id: tasks[0].task_id.clone(),
                note: note.into(),
            },
        )
    };
    let e1 = api.resolve_task(resolve(" ")).await.unwrap_err();
    assert_eq!(e1.code(), tonic::Code::InvalidArgument);
    assert!(e1.message().contains("note"), "{}", e1.message());
    let done = api
        .resolve_task(resolve("phoned the referrer instead"))
        .await?
        .into_inner();
    assert_eq!(
        (done.status.as_str(), done.resolved_by.as_str()),
        ("resolved", "person:tm-1")
    );
    assert_eq!(
        api.resolve_task(resolve("again")).await.unwrap_err().code(),
        tonic::Code::NotFound,
        "resolved once"
    );
    assert!(
        api.list_tasks(list(as_who("worcs", &["team_manager"])))
            .await?
            .into_inner()
            .tasks
            .is_empty()
    );
    Ok(())
}

macro_rules! both {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $name() -> anyhow::Result<()> {
                super::$name(super::env(false).await?).await
            })+
            #[tokio::test]
            async fn missing_council_mailboxes_are_undeliverable() -> anyhow::Result<()> {
                super::missing_council_mailboxes_are_undeliverable(
                    super::without_council_mailboxes(false).await?,
                )
                .await
            }
        }
        mod postgres {
            $(#[tokio::test] async fn $name() -> anyhow::Result<()> {
                super::$name(super::env(true).await?).await
            })+
            #[tokio::test]
            async fn missing_council_mailboxes_are_undeliverable() -> anyhow::Result<()> {
                super::missing_council_mailboxes_are_undeliverable(
                    super::without_council_mailboxes(true).await?,
                )
                .await
            }
        }
    };
}

both!(
    two_senders_send_each_message_once,
    events_arriving_together_are_recorded_together_once_each,
    screening_outcomes_reach_the_referrer,
    referrer_on_the_suppression_list_gets_nothing_from_intake_events,
    the_front_door_is_told_first_without_names,
    step_up_referrer_marked_unsafe_gets_nothing,
    council_mailboxes_on_the_suppression_list_get_nothing,
    consent_is_asked_of_safe_parents_only,
    a_person_marked_unsafe_later_gets_nothing_at_any_address,
    a_confirmed_merge_suppresses_the_person_under_both_ids,
    the_team_manager_hears_of_each_breach_once,
    tenants_are_kept_apart,
    the_front_door_is_retried_without_end_and_raised_after_a_minute,
    a_dead_senders_claims_are_sent_within_seconds,
    a_message_that_fails_for_good_is_a_task_for_the_team_manager,
);
