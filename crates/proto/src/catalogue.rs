//! The event catalogue: every subject the platform publishes or consumes, its payload, who
//! publishes and who consumes. Services build their subjects and consumers from these constants,
//! and `earlyhelp asyncapi` renders the AsyncAPI document from them, so the published description
//! cannot drift from the code.

/// A domain event: `<ns>.<tenant>.<service>.<name>`, payload a protobuf message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventSpec {
    pub service: &'static str,
    pub name: &'static str,
    /// Fully qualified protobuf message name; also the envelope's `Eh-Type`.
    pub payload: &'static str,
    pub summary: &'static str,
}

impl EventSpec {
    /// The subject for one tenant.
    pub fn subject(&self, ns: &str, tenant: &str) -> String {
        format!("{ns}.{tenant}.{}.{}", self.service, self.name)
    }
    /// The subject filter across tenants.
    pub fn filter(&self, ns: &str) -> String {
        format!("{ns}.*.{}.{}", self.service, self.name)
    }
}

/// What upstream systems publish: `<ns>.<tenant>.inbound.<kind>`, payload JSON under a schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboundSpec {
    pub kind: &'static str,
    /// The JSON Schema `$id` the payload validates against.
    pub schema: &'static str,
    pub summary: &'static str,
}

impl InboundSpec {
    pub fn subject(&self, ns: &str, tenant: &str) -> String {
        format!("{ns}.{tenant}.inbound.{}", self.kind)
    }
    pub fn filter(&self, ns: &str) -> String {
        format!("{ns}.*.inbound.{}", self.kind)
    }
}

/// What a durable consumer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Event(&'static EventSpec),
    Inbound(&'static InboundSpec),
}

/// A durable consumer of one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscription {
    /// The durable consumer's name.
    pub consumer: &'static str,
    pub service: &'static str,
    pub source: Source,
    pub summary: &'static str,
}

impl Subscription {
    pub fn filter(&self, ns: &str) -> String {
        match self.source {
            Source::Event(e) => e.filter(ns),
            Source::Inbound(i) => i.filter(ns),
        }
    }
}

pub const INBOUND_REFERRAL: InboundSpec = InboundSpec {
    kind: "referral",
    schema: "earlyhelp/referral.v1",
    summary: "A request for support from an upstream system (JSON, contracts/referral.v1.schema.json).",
};

pub const REFERRAL_RECEIVED: EventSpec = EventSpec {
    service: "intake",
    name: "referral_received",
    payload: "earlyhelp.intake.v1.ReferralReceived",
    summary: "A valid request for support was stored (once per source reference).",
};
pub const REFERRAL_REJECTED: EventSpec = EventSpec {
    service: "intake",
    name: "referral_rejected",
    payload: "earlyhelp.intake.v1.ReferralRejected",
    summary: "A request was refused, with every reason; nothing was stored.",
};
pub const CONSENT_RECORDED: EventSpec = EventSpec {
    service: "consent",
    name: "consent_recorded",
    payload: "earlyhelp.consent.v1.ConsentRecorded",
    summary: "A consent record was added to the family's ledger.",
};
pub const CONSENT_WITHDRAWN: EventSpec = EventSpec {
    service: "consent",
    name: "consent_withdrawn",
    payload: "earlyhelp.consent.v1.ConsentWithdrawn",
    summary: "Consent was withdrawn; every later sharing check sees it.",
};
pub const SAFEGUARDING_OVERRIDE_GRANTED: EventSpec = EventSpec {
    service: "consent",
    name: "safeguarding_override_granted",
    payload: "earlyhelp.consent.v1.SafeguardingOverrideGranted",
    summary: "Sharing without consent was authorised on a stated safeguarding basis.",
};
pub const MESSAGE_SENT: EventSpec = EventSpec {
    service: "notifications",
    name: "message_sent",
    payload: "earlyhelp.notifications.v1.MessageSent",
    summary: "A message was delivered to its channel (e.g. accepted by the SMTP server).",
};

pub const INTAKE_INBOUND_REFERRAL: Subscription = Subscription {
    consumer: "intake_inbound_referral",
    service: "intake",
    source: Source::Inbound(&INBOUND_REFERRAL),
    summary: "Validates, de-duplicates and stores requests for support.",
};
pub const NOTIFICATIONS_REFERRAL_RECEIVED: Subscription = Subscription {
    consumer: "notifications_referral_received",
    service: "notifications",
    source: Source::Event(&REFERRAL_RECEIVED),
    summary: "Acknowledges the referral to the referrer; records unsafe addresses.",
};
pub const CONSENT_REFERRAL_RECEIVED: Subscription = Subscription {
    consumer: "consent_referral_received",
    service: "consent",
    source: Source::Event(&REFERRAL_RECEIVED),
    summary: "Records the consent the referral carries.",
};

/// Every event the platform publishes.
pub const EVENTS: &[&EventSpec] = &[
    &REFERRAL_RECEIVED,
    &REFERRAL_REJECTED,
    &CONSENT_RECORDED,
    &CONSENT_WITHDRAWN,
    &SAFEGUARDING_OVERRIDE_GRANTED,
    &MESSAGE_SENT,
];

/// What upstream systems may publish.
pub const INBOUND: &[&InboundSpec] = &[&INBOUND_REFERRAL];

/// Every durable consumer.
pub const SUBSCRIPTIONS: &[&Subscription] = &[
    &INTAKE_INBOUND_REFERRAL,
    &NOTIFICATIONS_REFERRAL_RECEIVED,
    &CONSENT_REFERRAL_RECEIVED,
];
