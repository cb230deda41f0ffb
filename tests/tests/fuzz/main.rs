//! Fuzzing what comes from outside (issue 15), on the stable toolchain with proptest: the referral
//! contract (raw bytes from the inbound subject, structure-aware mutations of a valid document,
//! the gRPC door's protobuf), the envelope in message headers and their NATS encoding, and the
//! protobuf decoder of every event payload of the catalogue.
//!
//! Each target must never panic and never hang (a case slower than [`SLOW`] fails), and every
//! rejection must say why: the contract's violations each name a rule, and never repeat the data
//! (values and property names carrying a marker never appear in a path or reason); a decoder's
//! error has a message. Payloads that decode re-encode to the same message.
//!
//! Three ways to run:
//! - the corpus (`tests/fuzz-corpus/<target>/`), every file, as regressions;
//! - a short run of each target (a few hundred generated cases, seconds) in `cargo test`;
//! - `just fuzz` (the ignored `fuzz_long`): each target for `EH_FUZZ_SECS` seconds (default 60),
//!   printing executions per second. An input that fails is written to the corpus first, so it
//!   stays a regression once fixed.
use eh_bus::envelope::{self, Envelope, Received};
use eh_intake::domain::contract;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A case taking longer than this is a hang.
const SLOW: Duration = Duration::from_secs(2);
/// The inbound subject's payload limit the fuzzer parses with (the setting's default).
const MAX_BYTES: usize = 256 * 1024;
/// In every value and property name the structure-aware fuzzer writes: it must never come back
/// in a violation (a reason or a path), which tells the rule, never the data.
const MARKER: &str = "QXSECRET";

// ---------------------------------------------------------------------------------------------
// Targets: each checks one input and says what is wrong, if anything.

type Outcome = Result<(), String>;

/// Inputs a target accepted (a referral the contract took, headers holding a whole envelope, a
/// payload that decoded — counted per decoder), so a run shows how far past the first check its
/// inputs got.
static ACCEPTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn accepted() {
    ACCEPTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Bytes from the inbound referral subject.
fn referral_bytes(bytes: &[u8]) -> Outcome {
    match contract::parse(bytes, MAX_BYTES) {
        Ok(_) => {
            accepted();
            Ok(())
        }
        Err(r) => rejection_explained(&r, false),
    }
}

/// A JSON document (already parsed) against the contract. Accepted, it converts to the gRPC
/// message and back to a document the contract accepts too (the two doors agree).
fn referral_doc(doc: &Value) -> Outcome {
    match contract::validate(doc) {
        Ok(referral) => contract::validate(&contract::to_json(&referral))
            .inspect(|_| accepted())
            .map(|_| ())
            .map_err(|r| format!("accepted, but its gRPC form is refused: {}", r.summary())),
        Err(r) => rejection_explained(&r, true),
    }
}

/// The gRPC door: any `Referral` message (decoded from bytes) as the contract sees it.
fn referral_grpc(bytes: &[u8]) -> Outcome {
    use prost::Message;
    match eh_proto::intake::v1::Referral::decode(bytes) {
        Ok(r) => match contract::validate(&contract::to_json(&r)) {
            Ok(_) => {
                accepted();
                Ok(())
            }
            Err(r) => rejection_explained(&r, false),
        },
        Err(e) => explained("Referral decode", &e.to_string()),
    }
}

/// Every violation names a rule; with `marked`, none repeats the marker.
fn rejection_explained(r: &contract::Rejection, marked: bool) -> Outcome {
    if r.violations.is_empty() {
        return Err("refused without a violation".into());
    }
    for v in &r.violations {
        if v.reason.trim().is_empty() {
            return Err(format!("a violation at {:?} without a reason", v.path));
        }
        if marked && (v.reason.contains(MARKER) || v.path.contains(MARKER)) {
            return Err(format!(
                "a violation repeats the data: {:?}: {:?}",
                v.path, v.reason
            ));
        }
    }
    Ok(())
}

fn explained(what: &str, message: &str) -> Outcome {
    if message.trim().is_empty() {
        Err(format!("{what} failed without a message"))
    } else {
        Ok(())
    }
}

/// Message headers: the envelope read from them, the inbox key, their NATS encoding.
fn headers(h: &BTreeMap<String, String>) -> Outcome {
    if let Some(e) = Envelope::from_headers(h) {
        accepted();
        // What was read is written back and read again unchanged.
        let again = Envelope::from_headers(&e.to_headers())
            .ok_or("an envelope read from headers cannot be read from its own headers")?;
        let same = again.id == e.id
            && again.event_type == e.event_type
            && again.schema_version == e.schema_version
            && again.tenant == e.tenant
            && again.occurred_at.timestamp_micros() == e.occurred_at.timestamp_micros()
            && again.correlation_id == e.correlation_id
            && again.causation_id == e.causation_id
            && again.actor == e.actor
            && again.trace == e.trace;
        if !same {
            return Err(format!(
                "envelope changed on a round trip: {e:?} → {again:?}"
            ));
        }
    }
    let received = Received {
        subject: "eh.t.inbound.referral".into(),
        headers: h.clone(),
        payload: Default::default(),
        delivered: 1,
        stream_seq: 3,
    };
    if received.key().is_empty() && !h.values().any(String::is_empty) {
        return Err("an empty inbox key".into());
    }
    match eh_bus::nats::header_map(h) {
        Ok(map) => {
            let back = eh_bus::nats::from_header_map(Some(&map));
            if back.len() > h.len() {
                return Err("the NATS encoding made up headers".into());
            }
            if back.values().any(|v| v.contains(['\r', '\n'])) {
                return Err("a line break in a NATS header value".into());
            }
            Ok(())
        }
        Err(e) => explained("NATS headers", &e.to_string()),
    }
}

/// One event payload decoder: decodes or says why; what decodes re-encodes to the same message.
fn decode_round_trip<M: prost::Message + Default + PartialEq + std::fmt::Debug>(
    bytes: &[u8],
) -> Outcome {
    match M::decode(bytes) {
        Ok(m) => {
            accepted();
            let again = M::decode(m.encode_to_vec().as_slice())
                .map_err(|e| format!("its own encoding does not decode: {e}"))?;
            if again == m {
                Ok(())
            } else {
                Err(format!("changed on a round trip: {m:?} → {again:?}"))
            }
        }
        Err(e) => explained("decode", &e.to_string()),
    }
}

type Decoder = fn(&[u8]) -> Outcome;

macro_rules! decoders {
    ($($name:literal => $t:ty),* $(,)?) => {
        &[$(($name, decode_round_trip::<$t> as Decoder)),*]
    };
}

/// Every payload type of the catalogue, by its full name.
const DECODERS: &[(&str, Decoder)] = decoders![
    "earlyhelp.intake.v1.ReferralReceived" => eh_proto::intake::v1::ReferralReceived,
    "earlyhelp.intake.v1.ReferralRejected" => eh_proto::intake::v1::ReferralRejected,
    "earlyhelp.intake.v1.ScreenReferral" => eh_proto::intake::v1::ScreenReferral,
    "earlyhelp.intake.v1.ReferAgain" => eh_proto::intake::v1::ReferAgain,
    "earlyhelp.intake.v1.ScreeningDecided" => eh_proto::intake::v1::ScreeningDecided,
    "earlyhelp.consent.v1.ConsentRecorded" => eh_proto::consent::v1::ConsentRecorded,
    "earlyhelp.consent.v1.ConsentWithdrawn" => eh_proto::consent::v1::ConsentWithdrawn,
    "earlyhelp.consent.v1.SafeguardingOverrideGranted" => eh_proto::consent::v1::SafeguardingOverrideGranted,
    "earlyhelp.notifications.v1.MessageSent" => eh_proto::notifications::v1::MessageSent,
    "earlyhelp.notifications.v1.FrontDoorOverdue" => eh_proto::notifications::v1::FrontDoorOverdue,
    "earlyhelp.casework.v1.CaseStateChanged" => eh_proto::casework::v1::CaseStateChanged,
    "earlyhelp.casework.v1.CaseSteppedUp" => eh_proto::casework::v1::CaseSteppedUp,
    "earlyhelp.casework.v1.CaseReadyForAllocation" => eh_proto::casework::v1::CaseReadyForAllocation,
    "earlyhelp.casework.v1.CaseClosed" => eh_proto::casework::v1::CaseClosed,
    "earlyhelp.casework.v1.ConsentRequested" => eh_proto::casework::v1::ConsentRequested,
    "earlyhelp.casework.v1.LeadAssigned" => eh_proto::casework::v1::LeadAssigned,
    "earlyhelp.casework.v1.ServiceLevelBreached" => eh_proto::casework::v1::ServiceLevelBreached,
    "earlyhelp.assessment.v1.AssessmentOpened" => eh_proto::assessment::v1::AssessmentOpened,
    "earlyhelp.assessment.v1.AssessmentFinalised" => eh_proto::assessment::v1::AssessmentFinalised,
    "earlyhelp.assessment.v1.PlanAgreed" => eh_proto::assessment::v1::PlanAgreed,
    "earlyhelp.assessment.v1.ActionOverdue" => eh_proto::assessment::v1::ActionOverdue,
    "earlyhelp.assessment.v1.ReviewRecorded" => eh_proto::assessment::v1::ReviewRecorded,
    "earlyhelp.assessment.v1.ScoresRecorded" => eh_proto::assessment::v1::ScoresRecorded,
    "earlyhelp.assessment.v1.CaseClosureRecorded" => eh_proto::assessment::v1::CaseClosureRecorded,
    "earlyhelp.assessment.v1.FollowUpDue" => eh_proto::assessment::v1::FollowUpDue,
    "earlyhelp.assessment.v1.FollowUpRecorded" => eh_proto::assessment::v1::FollowUpRecorded,
    "earlyhelp.allocation.v1.DirectoryImported" => eh_proto::allocation::v1::DirectoryImported,
    "earlyhelp.allocation.v1.OfferMade" => eh_proto::allocation::v1::OfferMade,
    "earlyhelp.allocation.v1.OfferAccepted" => eh_proto::allocation::v1::OfferAccepted,
    "earlyhelp.allocation.v1.OfferDeclined" => eh_proto::allocation::v1::OfferDeclined,
    "earlyhelp.allocation.v1.CaseWaiting" => eh_proto::allocation::v1::CaseWaiting,
    "earlyhelp.allocation.v1.OfferExpired" => eh_proto::allocation::v1::OfferExpired,
    "earlyhelp.allocation.v1.WaitingLimitBreached" => eh_proto::allocation::v1::WaitingLimitBreached,
    "earlyhelp.allocation.v1.LeadPractitionerNamed" => eh_proto::allocation::v1::LeadPractitionerNamed,
    "earlyhelp.allocation.v1.LeadPractitionerDeclined" => eh_proto::allocation::v1::LeadPractitionerDeclined,
    "earlyhelp.intake.v1.PeopleMerged" => eh_proto::intake::v1::PeopleMerged,
    "earlyhelp.intake.v1.PersonCorrected" => eh_proto::intake::v1::PersonCorrected,
    "earlyhelp.records.v1.DestructionOrdered" => eh_proto::records::v1::DestructionOrdered,
    "earlyhelp.records.v1.RecordsDestroyed" => eh_proto::records::v1::RecordsDestroyed,
];

/// The same bytes through every decoder.
fn event_payload(bytes: &[u8]) -> Outcome {
    for (name, decode) in DECODERS {
        decode(bytes).map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The corpus.

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz-corpus")
        .join(target)
}

/// Every file of a target's corpus: (name, bytes). Hex files (`.hex`) are decoded.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir(corpus_dir(target)) else {
        return out;
    };
    for entry in dir.flatten() {
        let path = entry.path();
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let name = path.display().to_string();
        let bytes = if path.extension().is_some_and(|e| e == "hex") {
            hex::decode(String::from_utf8_lossy(&bytes).trim()).unwrap_or_default()
        } else {
            bytes
        };
        out.push((name, bytes));
    }
    out.sort();
    out
}

/// Keeps a failing input as a regression of the corpus.
fn keep(target: &str, bytes: &[u8], hexed: bool) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    let path = corpus_dir(target).join(format!(
        "found-{:016x}.{}",
        h.finish(),
        if hexed { "hex" } else { "bin" }
    ));
    let _ = std::fs::create_dir_all(corpus_dir(target));
    let _ = if hexed {
        std::fs::write(&path, hex::encode(bytes))
    } else {
        std::fs::write(&path, bytes)
    };
    path
}

// ---------------------------------------------------------------------------------------------
// Inputs.

/// A valid referral as an upstream system sends it.
fn valid_referral() -> Value {
    earlyhelp::demo::example("FUZZ-1", Some("ref@school.example"))
}

/// Seeds for the byte fuzzers: the corpus, and the valid referral.
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let mut s: Vec<Vec<u8>> = corpus(target).into_iter().map(|(_, b)| b).collect();
    s.push(serde_json::to_vec(&valid_referral()).unwrap_or_default());
    s
}

/// Tokens that break parsers in interesting places.
const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b"\\",
    b":",
    b",",
    b"null",
    b"true",
    b"-0",
    b"1e999999",
    b"-9223372036854775809",
    b"18446744073709551616",
    b"0.0000000000000000000001",
    b"\\u0000",
    b"\\ud800",
    b"\xef\xbb\xbf",
    b"\xff\xfe",
    b"\xc3\x28",
    b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
    b"{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":",
    b"2026-02-30",
    b"9999-12-31T23:59:60Z",
    b"\"\\u202e\"",
    b"\xf0\x9f\x98\x80",
];

#[derive(Debug, Clone)]
enum Mutation {
    Flip(prop::sample::Index, u8),
    Insert(prop::sample::Index, Vec<u8>),
    Token(prop::sample::Index, prop::sample::Index),
    Delete(prop::sample::Index, usize),
    Duplicate(prop::sample::Index, usize),
    Truncate(prop::sample::Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (
            any::<prop::sample::Index>(),
            prop::collection::vec(any::<u8>(), 1..16)
        )
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<prop::sample::Index>(), any::<prop::sample::Index>())
            .prop_map(|(i, t)| Mutation::Token(i, t)),
        (any::<prop::sample::Index>(), 1usize..64).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<prop::sample::Index>(), 1usize..256).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
        any::<prop::sample::Index>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(mut b: Vec<u8>, ms: &[Mutation]) -> Vec<u8> {
    for m in ms {
        let at = |i: &prop::sample::Index, len: usize| if len == 0 { 0 } else { i.index(len + 1) };
        match m {
            Mutation::Flip(i, x) if !b.is_empty() => {
                let p = i.index(b.len());
                b[p] ^= x | 1;
            }
            Mutation::Flip(..) => {}
            Mutation::Insert(i, bytes) => {
                let p = at(i, b.len());
                b.splice(p..p, bytes.iter().copied());
            }
            Mutation::Token(i, t) => {
                let p = at(i, b.len());
                let tok = TOKENS[t.index(TOKENS.len())];
                b.splice(p..p, tok.iter().copied());
            }
            Mutation::Delete(i, n) => {
                let p = at(i, b.len()).min(b.len());
                let end = (p + n).min(b.len());
                b.drain(p..end);
            }
            Mutation::Duplicate(i, n) => {
                let p = at(i, b.len()).min(b.len());
                let end = (p + n).min(b.len());
                let part = b[p..end].to_vec();
                b.splice(p..p, part);
            }
            Mutation::Truncate(i) => {
                let p = at(i, b.len()).min(b.len());
                b.truncate(p);
            }
        }
    }
    b
}

/// Bytes: random, or a seed mutated a few times.
fn bytes_from(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..2048),
        4 => (
            prop::sample::select(seeds),
            prop::collection::vec(mutation(), 1..8)
        )
            .prop_map(|(seed, ms)| mutate(seed, &ms)),
    ]
}

/// A string as a sender might write one: contract-like, format-like, hostile, or anything, each
/// carrying the marker where it is free text.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(" ".repeat(3)),
        "[a-z_]{1,12}".prop_map(|s| format!("{s}{MARKER}")),
        Just(format!("2016-05-14{MARKER}")),
        Just("2016-02-30".to_string()),
        Just("2026-11-23T09:30:00Z".to_string()),
        Just(format!("{MARKER}@example.org")),
        Just(format!("not an email {MARKER}")),
        Just("9434765919".to_string()),
        Just("education".to_string()),
        Just("\u{0}\u{202e}\u{feff}".to_string()),
        any::<String>().prop_map(|s| format!("{s}{MARKER}")),
        "[A-Za-z ]{1,40}".prop_map(|s| format!("{s}{MARKER}").repeat(64)),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof!["[a-z_]{1,10}", "[A-Za-z0-9 ]{1,10}"]
                    .prop_map(|k| format!("{k}{MARKER}")),
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every JSON pointer into `v`, the root included.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                pointers(
                    x,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                pointers(x, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[derive(Debug, Clone)]
enum Edit {
    /// Replace the value at a pointer.
    Set(prop::sample::Index, Value),
    /// Remove the property or item at a pointer.
    Remove(prop::sample::Index),
    /// Add a property (named with the marker) to the object at a pointer.
    Add(prop::sample::Index, Value),
    /// Repeat the last item of the array at a pointer.
    Repeat(prop::sample::Index, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let i = any::<prop::sample::Index>;
    prop_oneof![
        4 => (i(), json_value()).prop_map(|(i, v)| Edit::Set(i, v)),
        2 => i().prop_map(Edit::Remove),
        1 => (i(), json_value()).prop_map(|(i, v)| Edit::Add(i, v)),
        1 => (i(), 1usize..40).prop_map(|(i, n)| Edit::Repeat(i, n)),
    ]
}

fn apply(doc: &mut Value, e: &Edit) {
    let mut all = Vec::new();
    pointers(doc, String::new(), &mut all);
    let pick = |i: &prop::sample::Index| all[i.index(all.len())].clone();
    match e {
        Edit::Set(i, v) => {
            if let Some(x) = doc.pointer_mut(&pick(i)) {
                *x = v.clone();
            }
        }
        Edit::Remove(i) => {
            let p = pick(i);
            if let Some((parent, last)) = p.rsplit_once('/')
                && let Some(x) = doc.pointer_mut(parent)
            {
                let last = last.replace("~1", "/").replace("~0", "~");
                match x {
                    Value::Object(m) => {
                        m.remove(&last);
                    }
                    Value::Array(a) => {
                        if let Ok(n) = last.parse::<usize>()
                            && n < a.len()
                        {
                            a.remove(n);
                        }
                    }
                    _ => {}
                }
            }
        }
        Edit::Add(i, v) => {
            if let Some(Value::Object(m)) = doc.pointer_mut(&pick(i)) {
                m.insert(format!("Extra{MARKER}"), v.clone());
            }
        }
        Edit::Repeat(i, n) => {
            if let Some(Value::Array(a)) = doc.pointer_mut(&pick(i))
                && let Some(last) = a.last().cloned()
            {
                a.extend(std::iter::repeat_n(last, *n));
            }
        }
    }
}

/// The valid referral, edited a few times.
fn referral_docs() -> impl Strategy<Value = Value> {
    prop::collection::vec(edit(), 1..6).prop_map(|edits| {
        let mut doc = valid_referral();
        for e in &edits {
            apply(&mut doc, e);
        }
        doc
    })
}

/// Header maps: the envelope's names with plausible or hostile values, and anything else.
fn header_maps() -> impl Strategy<Value = BTreeMap<String, String>> {
    let name = prop_oneof![
        prop::sample::select(vec![
            envelope::H_MSG_ID,
            envelope::H_ID,
            envelope::H_TYPE,
            envelope::H_SCHEMA,
            envelope::H_TENANT,
            envelope::H_OCCURRED,
            envelope::H_CORRELATION,
            envelope::H_CAUSATION,
            envelope::H_ACTOR,
            envelope::H_CONTENT_TYPE,
            "traceparent",
            "tracestate",
        ])
        .prop_map(str::to_string),
        any::<String>(),
        "[A-Za-z-]{1,20}",
    ];
    let value = prop_oneof![
        Just(uuid::Uuid::now_v7().to_string()),
        Just("00000000-0000-0000-0000-000000000000".to_string()),
        Just(chrono::Utc::now().to_rfc3339()),
        Just("2026-11-23T09:30:00+14:00".to_string()),
        Just("+262143-12-31T23:59:59Z".to_string()),
        Just("4294967296".to_string()),
        Just("1".to_string()),
        "[a-z:]{0,30}",
        any::<String>(),
        Just("a\r\nNats-Msg-Id: forged".to_string()),
    ];
    let random = prop::collection::btree_map(name.clone(), value.clone(), 0..14);
    // A whole envelope, then some of its headers removed or rewritten and others added.
    let edited = (
        prop::collection::vec(any::<prop::sample::Index>(), 0..3),
        prop::collection::btree_map(name, value, 0..4),
    )
        .prop_map(|(removed, changed)| {
            let mut h = Envelope::new(
                "earlyhelp.intake.v1.ReferralReceived",
                "worcs",
                "system:hub",
                chrono::Utc::now(),
            )
            .to_headers();
            for i in removed {
                let names: Vec<String> = h.keys().cloned().collect();
                if !names.is_empty() {
                    h.remove(&names[i.index(names.len())]);
                }
            }
            h.extend(changed);
            h
        });
    prop_oneof![1 => random, 2 => edited]
}

/// Payload bytes: random, a real event mutated, or a seed of the corpus mutated.
fn payloads() -> impl Strategy<Value = Vec<u8>> {
    use prost::Message;
    let mut seeds = seeds("proto");
    if let Ok(referral) = serde_json::from_value::<eh_proto::intake::v1::Referral>(valid_referral())
    {
        seeds.push(
            eh_proto::intake::v1::ReferralReceived {
                referral_id: uuid::Uuid::now_v7().to_string(),
                family_id: uuid::Uuid::now_v7().to_string(),
                received_at: "2026-11-23T09:30:00Z".into(),
                referral: Some(referral.clone()),
                ..Default::default()
            }
            .encode_to_vec(),
        );
        seeds.push(referral.encode_to_vec());
    }
    bytes_from(seeds)
}

// ---------------------------------------------------------------------------------------------
// Running.

/// Runs `check` on `input`, failing a panic or a case slower than [`SLOW`].
fn timed<T: std::fmt::Debug>(
    input: &T,
    check: impl FnOnce(&T) -> Outcome,
) -> Result<Duration, String> {
    let started = Instant::now();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(input)));
    let took = started.elapsed();
    match result {
        Ok(Ok(())) if took <= SLOW => Ok(took),
        Ok(Ok(())) => Err(format!("took {took:?} (a hang?)")),
        Ok(Err(e)) => Err(e),
        Err(p) => Err(format!(
            "panicked: {}",
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        )),
    }
}

/// The short run of one target, with shrinking.
fn short<S: Strategy>(cases: u32, strategy: S, check: impl Fn(&S::Value) -> Outcome)
where
    S::Value: std::fmt::Debug,
{
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&strategy, |input| {
        timed(&input, &check)
            .map(|_| ())
            .map_err(TestCaseError::fail)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// What one target did in a long run.
struct Figures {
    target: &'static str,
    executions: u64,
    accepted: u64,
    seconds: f64,
    slowest: Duration,
}

/// Runs one target for `secs`; an input that fails is kept in the corpus, then reported.
fn long<S: Strategy>(
    target: &'static str,
    secs: u64,
    strategy: S,
    check: impl Fn(&S::Value) -> Outcome,
    to_bytes: impl Fn(&S::Value) -> (Vec<u8>, bool),
) -> Figures
where
    S::Value: std::fmt::Debug,
{
    let mut runner = TestRunner::new(Config {
        failure_persistence: None,
        ..Config::default()
    });
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let accepted_before = ACCEPTED.load(std::sync::atomic::Ordering::Relaxed);
    let (mut executions, mut slowest) = (0u64, Duration::ZERO);
    while Instant::now() < until {
        let tree = match strategy.new_tree(&mut runner) {
            Ok(t) => t,
            Err(e) => panic!("{target}: cannot generate: {e}"),
        };
        let input = tree.current();
        match timed(&input, &check) {
            Ok(took) => slowest = slowest.max(took),
            Err(e) => {
                let (bytes, hexed) = to_bytes(&input);
                let corpus = match target {
                    "referral-doc" => "referral",
                    "referral-grpc" => "proto",
                    t => t,
                };
                let kept = keep(corpus, &bytes, hexed);
                panic!(
                    "{target}: {e}\n  input kept as {}\n  input: {input:?}",
                    kept.display()
                );
            }
        }
        executions += 1;
    }
    Figures {
        target,
        executions,
        accepted: ACCEPTED.load(std::sync::atomic::Ordering::Relaxed) - accepted_before,
        seconds: started.elapsed().as_secs_f64(),
        slowest,
    }
}

fn json_bytes(v: &Value) -> (Vec<u8>, bool) {
    (serde_json::to_vec_pretty(v).unwrap_or_default(), false)
}

fn header_bytes(h: &BTreeMap<String, String>) -> (Vec<u8>, bool) {
    (serde_json::to_vec_pretty(h).unwrap_or_default(), false)
}

#[allow(clippy::ptr_arg)]
fn raw(b: &Vec<u8>) -> (Vec<u8>, bool) {
    (b.clone(), true)
}

// ---------------------------------------------------------------------------------------------
// The corpus, as regressions.

#[test]
fn the_corpus_passes_every_target() {
    let mut n = 0;
    for (name, bytes) in corpus("referral") {
        timed(&bytes, |b| referral_bytes(b)).unwrap_or_else(|e| panic!("{name}: {e}"));
        if let Ok(doc) = serde_json::from_slice::<Value>(&bytes) {
            timed(&doc, referral_doc).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        n += 1;
    }
    for (name, bytes) in corpus("headers") {
        let h: BTreeMap<String, String> =
            serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        timed(&h, headers).unwrap_or_else(|e| panic!("{name}: {e}"));
        n += 1;
    }
    for (name, bytes) in corpus("proto") {
        timed(&bytes, |b| event_payload(b)).unwrap_or_else(|e| panic!("{name}: {e}"));
        timed(&bytes, |b| referral_grpc(b)).unwrap_or_else(|e| panic!("{name}: {e}"));
        n += 1;
    }
    assert!(n >= 10, "the corpus is missing: {n} file(s)");
}

#[test]
fn the_valid_referral_is_accepted_and_every_payload_type_has_a_decoder() {
    assert!(contract::validate(&valid_referral()).is_ok());
    let mut names: Vec<&str> = eh_proto::catalogue::EVENTS
        .iter()
        .map(|e| e.payload)
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut ours: Vec<&str> = DECODERS.iter().map(|(n, _)| *n).collect();
    ours.sort_unstable();
    assert_eq!(names, ours);
}

// ---------------------------------------------------------------------------------------------
// Short runs (part of `cargo test`).

#[test]
fn fuzz_referral_bytes_briefly() {
    short(300, bytes_from(seeds("referral")), |b| referral_bytes(b));
}

#[test]
fn fuzz_referral_documents_briefly() {
    short(300, referral_docs(), referral_doc);
}

#[test]
fn fuzz_referral_over_grpc_briefly() {
    short(300, payloads(), |b| referral_grpc(b));
}

#[test]
fn fuzz_headers_briefly() {
    short(1000, header_maps(), headers);
}

#[test]
fn fuzz_event_payloads_briefly() {
    short(300, payloads(), |b| event_payload(b));
}

// ---------------------------------------------------------------------------------------------
// The long run: `just fuzz`.

#[test]
#[ignore = "long: `just fuzz` (EH_FUZZ_SECS per target)"]
fn fuzz_long() {
    let secs: u64 = std::env::var("EH_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let figures = [
        long(
            "referral",
            secs,
            bytes_from(seeds("referral")),
            |b| referral_bytes(b),
            raw,
        ),
        long(
            "referral-doc",
            secs,
            referral_docs(),
            referral_doc,
            json_bytes,
        ),
        long("referral-grpc", secs, payloads(), |b| referral_grpc(b), raw),
        long("headers", secs, header_maps(), headers, header_bytes),
        long("proto", secs, payloads(), |b| event_payload(b), raw),
    ];
    println!(
        "{:<14} {:>12} {:>12} {:>9} {:>10} {:>12}",
        "target", "executions", "accepted", "seconds", "per second", "slowest"
    );
    for f in figures {
        println!(
            "{:<14} {:>12} {:>12} {:>9.1} {:>10.0} {:>12?}",
            f.target,
            f.executions,
            f.accepted,
            f.seconds,
            f.executions as f64 / f.seconds,
            f.slowest
        );
    }
}
