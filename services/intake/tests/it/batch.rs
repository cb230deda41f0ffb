//! Referrals stored in batches (`handlers::batch`): submissions that arrive together are
//! stored in one transaction, and the answers are those of storing them one after another.
use super::matching::{adult, child, doc, marsh};
use super::{Env, received_events, submit_to};
use eh_bus::Received;
use eh_intake::handlers::{Door, Outcome};
use eh_intake::store;
use futures::future::join_all;
use sea_orm::ConnectionTrait;
use serde_json::Value;
use std::collections::BTreeMap;

/// How many people versions (lock stamps) `tenant`'s people carry: one per batch that created
/// someone.
async fn stamps(e: &Env) -> i64 {
    let r = e
        .db()
        .query_one_raw(eh_store::stmt(
            e.db().get_database_backend(),
            "SELECT COUNT(DISTINCT version) FROM people WHERE tenant = 'worcs'",
            [],
        ))
        .await
        .unwrap()
        .unwrap();
    r.try_get_by_index(0).unwrap()
}

/// Family `i` (0..=10): nobody in it resembles anyone in another.
pub fn distinct_family(i: usize) -> Value {
    const SURNAMES: [&str; 11] = [
        "Abbott",
        "Brennan",
        "Chowdhury",
        "Delacroix",
        "Evans",
        "Fitzgerald",
        "Gallagher",
        "Hussain",
        "Iqbal",
        "Jankowski",
        "Kowalczyk",
    ];
    const GIVEN: [&str; 11] = [
        "Amy", "Ben", "Cara", "Dev", "Ella", "Finn", "Gus", "Hana", "Ivo", "Jay", "Kai",
    ];
    doc(
        &format!("D-{i}"),
        vec![child(
            GIVEN[i],
            SURNAMES[i],
            &format!("20{:02}-0{}-1{}", 10 + i, i % 9 + 1, i % 9),
        )],
        vec![adult("Pat", SURNAMES[i])],
        Some(&format!("WR{} {}AB", i + 1, i % 9 + 1)),
    )
}

pub async fn referrals_arriving_together_are_stored_as_one_after_another(e: Env) {
    // The tenant's people are loaded (so every submission below goes straight to its queue).
    submit_to(&e.intake, "worcs", distinct_family(0)).await;
    let before = stamps(&e).await;

    // Five referrals of one new family, a resubmission of the first, and ten other families,
    // all at once.
    let mut docs: Vec<Value> = (1..=5).map(|i| marsh(&format!("M-{i}"))).collect();
    docs.push(marsh("M-1"));
    docs.extend((1..=10).map(distinct_family));
    let outcomes = join_all(docs.into_iter().map(|d| submit_to(&e.intake, "worcs", d))).await;
    assert_eq!(stamps(&e).await, before + 1, "one batch, one lock stamp");

    let stored: Vec<&store::StoredReferral> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Stored(s) => Some(&**s),
            _ => None,
        })
        .collect();
    assert_eq!(stored.len(), 15);
    let first = stored[0];
    assert!(!first.known_family && !first.re_referral);
    // The later Marsh referrals found the people the first created in the same batch.
    for later in &stored[1..5] {
        assert_eq!(later.family_id, first.family_id);
        assert_eq!(later.children[0].person_id, first.children[0].person_id);
        assert_eq!(
            later.family_members[0].person_id,
            first.family_members[0].person_id
        );
        assert!(later.known_family && later.re_referral);
    }
    assert_eq!(
        stored[1].previous_referral_id.as_deref(),
        Some(first.id.as_str())
    );
    // The resubmission is the first referral, not a sixth.
    match &outcomes[5] {
        Outcome::Duplicate { id, .. } => assert_eq!(id, &first.id),
        other => panic!("expected a duplicate, got {other:?}"),
    }
    // The other families stay apart.
    let mut families: Vec<&str> = stored[5..].iter().map(|s| s.family_id.as_str()).collect();
    families.sort_unstable();
    families.dedup();
    assert_eq!(families.len(), 10);
    assert!(stored[5..].iter().all(|s| !s.known_family));

    // What the database holds agrees with what was answered: 2 + 2 per family, 16 events.
    assert_eq!(store::count(e.db(), "worcs").await.unwrap(), 16);
    assert_eq!(
        store::count_people(e.db(), "worcs").await.unwrap(),
        2 + 2 + 20
    );
    let events = received_events(e.db()).await;
    assert_eq!(events.len(), 16);
    for s in &stored {
        let ev = events.iter().find(|ev| ev.referral_id == s.id).unwrap();
        assert_eq!(ev.family_id, s.family_id);
        assert_eq!(ev.known_family, s.known_family);
        assert_eq!(ev.children[0].person_id, s.children[0].person_id);
    }
    let held = store::get(e.db(), "worcs", &stored[3].id)
        .await
        .unwrap()
        .unwrap();
    assert!(held.re_referral && held.known_family);
    // This replica's index holds every person stored, once.
    assert_eq!(e.intake.people.held("worcs").await, Some(24));
}

fn inbound(doc: &Value, msg_id: &str) -> Received {
    Received {
        subject: "eh.worcs.inbound.referral".into(),
        headers: BTreeMap::from([("Nats-Msg-Id".to_string(), msg_id.to_string())]),
        payload: serde_json::to_vec(doc).unwrap().into(),
        delivered: 1,
        stream_seq: 1,
    }
}

pub async fn a_message_delivered_twice_into_one_batch_is_handled_once(e: Env) {
    submit_to(&e.intake, "worcs", distinct_family(0)).await;
    let d = marsh("R-1");
    let typed = eh_intake::domain::contract::validate(&d).unwrap();
    let (m1, m2, m3) = (
        inbound(&d, "msg-1"),
        inbound(&d, "msg-1"),
        inbound(&d, "msg-2"),
    );
    async fn submit(
        e: &Env,
        d: &Value,
        typed: &eh_proto::intake::v1::Referral,
        m: &Received,
    ) -> Result<Outcome, eh_intake::handlers::StoreError> {
        e.intake
            .submit(
                "worcs",
                Ok((d.clone(), typed.clone())),
                Door {
                    actor: "system:upstream",
                    inbound: Some(m),
                },
            )
            .await
    }
    let (a, b, c) = tokio::join!(
        submit(&e, &d, &typed, &m1),
        submit(&e, &d, &typed, &m2),
        submit(&e, &d, &typed, &m3)
    );
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    let Outcome::Stored(s) = &a else {
        panic!("expected stored, got {a:?}")
    };
    assert!(matches!(b, Outcome::AlreadyHandled), "{b:?}");
    // Another message with the same source reference: the referral already held.
    assert!(
        matches!(&c, Outcome::Duplicate { id, .. } if id == &s.id),
        "{c:?}"
    );
    assert_eq!(store::count(e.db(), "worcs").await.unwrap(), 2);
    // Redelivered later: the inbox remembers.
    let again = submit(&e, &d, &typed, &m1).await.unwrap();
    assert!(matches!(again, Outcome::AlreadyHandled), "{again:?}");
    assert_eq!(received_events(e.db()).await.len(), 2);
}

/// A referral PostgreSQL refuses to store (a NUL character, which no `TEXT` column holds)
/// fails alone: its batch is stored again one by one.
pub async fn a_referral_the_database_refuses_fails_alone(e: Env) {
    if !e.postgres() {
        return; // SQLite stores the NUL.
    }
    submit_to(&e.intake, "worcs", distinct_family(0)).await;
    let poison = doc(
        "P-1",
        vec![child("Nul\u{0}l", "Batch", "2017-02-03")],
        vec![],
        None,
    );
    let typed = eh_intake::domain::contract::validate(&poison).unwrap();
    let bad = e.intake.submit(
        "worcs",
        Ok((poison.clone(), typed)),
        Door {
            actor: "person:test",
            inbound: None,
        },
    );
    let good = join_all((1..=4).map(|i| submit_to(&e.intake, "worcs", distinct_family(i))));
    let (bad, good) = tokio::join!(bad, good);
    let err = bad.unwrap_err();
    assert!(err.to_string().contains("0x00"), "{err}");
    assert!(good.iter().all(|o| matches!(o, Outcome::Stored(_))));
    assert_eq!(store::count(e.db(), "worcs").await.unwrap(), 5);
    assert_eq!(store::count_people(e.db(), "worcs").await.unwrap(), 10);
    // The refused child is not in the index either.
    assert_eq!(e.intake.people.held("worcs").await, Some(10));
    assert_eq!(received_events(e.db()).await.len(), 5);
}
