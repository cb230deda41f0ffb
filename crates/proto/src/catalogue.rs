//! The event catalogue: every subject the platform publishes or consumes, its payload, who
//! publishes and who consumes. Services build their subjects and consumers from these constants,
//! and `earlyhelp asyncapi` renders the AsyncAPI document from them, so the published description
//! cannot drift from the code.

/// A domain event: `<ns>.<tenant>.<service>.<name>`, payload a protobuf message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventSpec {
    /// The service token of the subject: the publisher for an event, the receiver for a command
    /// (`<ns>.<tenant>.<service>.cmd.<verb>`).
    pub service: &'static str,
    /// The service that publishes it (through its outbox).
    pub publisher: &'static str,
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

/// The urgent lane's door: a referral reporting a risk of significant harm
/// (`significant_harm_risk: true`). Intake reads it on a consumer of its own, so no backlog of
/// ordinary referrals on [`INBOUND_REFERRAL`] stands in front of it.
pub const INBOUND_REFERRAL_URGENT: InboundSpec = InboundSpec {
    kind: "referral.urgent",
    schema: "earlyhelp/referral.v1",
    summary: "A request for support reporting a risk of significant harm (significant_harm_risk: true), \
              same contract as inbound.referral: the urgent lane, read ahead of any backlog of ordinary \
              referrals. Upstream systems should publish significant-harm referrals here.",
};

pub const REFERRAL_RECEIVED: EventSpec = EventSpec {
    service: "intake",
    publisher: "intake",
    name: "referral_received",
    payload: "earlyhelp.intake.v1.ReferralReceived",
    summary: "A valid request for support was stored (once per source reference).",
};
/// The urgent lane from intake on: a significant-harm referral, announced a second time on a
/// subject of its own (a separate event id) in the same transaction as its `referral_received`,
/// for the consumers that must act on it at once.
pub const REFERRAL_RECEIVED_URGENT: EventSpec = EventSpec {
    service: "intake",
    publisher: "intake",
    name: "referral_received.urgent",
    payload: "earlyhelp.intake.v1.ReferralReceived",
    summary: "A stored referral reports a risk of significant harm: the urgent lane. Published beside its \
              referral_received (which every consumer of referrals still gets, in order).",
};
/// A practitioner confirmed that a person a referral named is a person intake already held.
pub const PEOPLE_MERGED: EventSpec = EventSpec {
    service: "intake",
    publisher: "intake",
    name: "people_merged",
    payload: "earlyhelp.intake.v1.PeopleMerged",
    summary: "Two person records are one person (a practitioner confirmed a match candidate), with whether \
              the person is unsafe to contact. Ids only.",
};
pub const REFERRAL_REJECTED: EventSpec = EventSpec {
    service: "intake",
    publisher: "intake",
    name: "referral_rejected",
    payload: "earlyhelp.intake.v1.ReferralRejected",
    summary: "A request was refused, with every reason; nothing was stored.",
};
pub const CONSENT_RECORDED: EventSpec = EventSpec {
    service: "consent",
    publisher: "consent",
    name: "consent_recorded",
    payload: "earlyhelp.consent.v1.ConsentRecorded",
    summary: "A consent record was added to the family's ledger.",
};
pub const CONSENT_WITHDRAWN: EventSpec = EventSpec {
    service: "consent",
    publisher: "consent",
    name: "consent_withdrawn",
    payload: "earlyhelp.consent.v1.ConsentWithdrawn",
    summary: "Consent was withdrawn; every later sharing check sees it.",
};
pub const SAFEGUARDING_OVERRIDE_GRANTED: EventSpec = EventSpec {
    service: "consent",
    publisher: "consent",
    name: "safeguarding_override_granted",
    payload: "earlyhelp.consent.v1.SafeguardingOverrideGranted",
    summary: "Sharing without consent was authorised on a stated safeguarding basis.",
};
pub const MESSAGE_SENT: EventSpec = EventSpec {
    service: "notifications",
    publisher: "notifications",
    name: "message_sent",
    payload: "earlyhelp.notifications.v1.MessageSent",
    summary: "A message was delivered to its channel (e.g. accepted by the SMTP server).",
};
pub const FRONT_DOOR_OVERDUE: EventSpec = EventSpec {
    service: "notifications",
    publisher: "notifications",
    name: "front_door_overdue",
    payload: "earlyhelp.notifications.v1.FrontDoorOverdue",
    summary: "An email to a council's front door (a step-up) was not sent within a minute; it is still \
              being retried.",
};

pub const SCREEN_REFERRAL: EventSpec = EventSpec {
    service: "intake",
    publisher: "casework",
    name: "cmd.screen_referral",
    payload: "earlyhelp.intake.v1.ScreenReferral",
    summary: "Command from casework: screen a referral now that consent is held.",
};
pub const REFER_AGAIN: EventSpec = EventSpec {
    service: "intake",
    publisher: "casework",
    name: "cmd.refer_again",
    payload: "earlyhelp.intake.v1.ReferAgain",
    summary: "Command from casework: the follow-up check of a closed case found the family needs \
              help again; intake makes a new request for support from the case's opening referral.",
};
pub const SCREENING_DECIDED: EventSpec = EventSpec {
    service: "intake",
    publisher: "intake",
    name: "screening_decided",
    payload: "earlyhelp.intake.v1.ScreeningDecided",
    summary: "A referral was screened: outcome, reasons and the rule version.",
};
pub const CASE_STATE_CHANGED: EventSpec = EventSpec {
    service: "casework",
    publisher: "casework",
    name: "case_state_changed",
    payload: "earlyhelp.casework.v1.CaseStateChanged",
    summary: "A case moved from one state to another (every transition, opening included).",
};
pub const CASE_STEPPED_UP: EventSpec = EventSpec {
    service: "casework",
    publisher: "casework",
    name: "case_stepped_up",
    payload: "earlyhelp.casework.v1.CaseSteppedUp",
    summary: "A case went to the council's front door (significant harm or a practitioner's call).",
};
pub const CASE_READY_FOR_ALLOCATION: EventSpec = EventSpec {
    service: "casework",
    publisher: "casework",
    name: "case_ready_for_allocation",
    payload: "earlyhelp.casework.v1.CaseReadyForAllocation",
    summary: "Consent is held and screening accepted the case: allocation may begin.",
};
pub const CASE_CLOSED: EventSpec = EventSpec {
    service: "casework",
    publisher: "casework",
    name: "case_closed",
    payload: "earlyhelp.casework.v1.CaseClosed",
    summary: "A case closed (advice given, no consent, consent withdrawn).",
};
pub const CONSENT_REQUESTED: EventSpec = EventSpec {
    service: "casework",
    publisher: "casework",
    name: "consent_requested",
    payload: "earlyhelp.casework.v1.ConsentRequested",
    summary: "Consent is still outstanding after the chase service level: ask the family.",
};
pub const SERVICE_LEVEL_BREACHED: EventSpec = EventSpec {
    service: "casework",
    publisher: "casework",
    name: "service_level_breached",
    payload: "earlyhelp.casework.v1.ServiceLevelBreached",
    summary: "A service-level clock of a case ran out; the team manager is told.",
};
pub const LEAD_ASSIGNED: EventSpec = EventSpec {
    service: "casework",
    publisher: "casework",
    name: "lead_assigned",
    payload: "earlyhelp.casework.v1.LeadAssigned",
    summary: "An allocated case has its lead practitioner: the family and the referrer are told who will \
              help and by when to expect first contact.",
};
pub const ASSESSMENT_OPENED: EventSpec = EventSpec {
    service: "assessment",
    publisher: "assessment",
    name: "assessment_opened",
    payload: "earlyhelp.assessment.v1.AssessmentOpened",
    summary: "A case's Early Help Assessment is open for the agencies' contributions (version 1, or a \
              new version of an amended one).",
};
pub const ASSESSMENT_FINALISED: EventSpec = EventSpec {
    service: "assessment",
    publisher: "assessment",
    name: "assessment_finalised",
    payload: "earlyhelp.assessment.v1.AssessmentFinalised",
    summary: "A version of a case's Early Help Assessment was finalised (locked); the contributing \
              agencies are named, never what they wrote.",
};
pub const PLAN_AGREED: EventSpec = EventSpec {
    service: "assessment",
    publisher: "assessment",
    name: "plan_agreed",
    payload: "earlyhelp.assessment.v1.PlanAgreed",
    summary: "A version of a case's Early Help plan was set (counts of outcomes and actions, nothing of \
              their content).",
};
pub const ACTION_OVERDUE: EventSpec = EventSpec {
    service: "assessment",
    publisher: "assessment",
    name: "action_overdue",
    payload: "earlyhelp.assessment.v1.ActionOverdue",
    summary: "A plan action passed its due date unfinished; its owner (or the lead, for the family's own \
              actions) is reminded. Says nothing of what the action is.",
};
pub const REVIEW_RECORDED: EventSpec = EventSpec {
    service: "assessment",
    publisher: "assessment",
    name: "review_recorded",
    payload: "earlyhelp.assessment.v1.ReviewRecorded",
    summary: "A review of the case's plan was recorded (its number; the summary stays in assessment).",
};
pub const SCORES_RECORDED: EventSpec = EventSpec {
    service: "assessment",
    publisher: "assessment",
    name: "scores_recorded",
    payload: "earlyhelp.assessment.v1.ScoresRecorded",
    summary: "Distance-travelled scores per headline problem at the start, a review or closure (numbers \
              only, for reporting).",
};
pub const CASE_CLOSURE_RECORDED: EventSpec = EventSpec {
    service: "assessment",
    publisher: "assessment",
    name: "case_closure_recorded",
    payload: "earlyhelp.assessment.v1.CaseClosureRecorded",
    summary: "The case closes with its outcomes: the kind of closure and, per headline problem, met or \
              not; when the six-month follow-up check falls due.",
};
pub const FOLLOW_UP_DUE: EventSpec = EventSpec {
    service: "assessment",
    publisher: "assessment",
    name: "follow_up_due",
    payload: "earlyhelp.assessment.v1.FollowUpDue",
    summary: "Six months after a closure with every outcome met: the lead is asked whether the outcomes \
              were sustained.",
};
pub const FOLLOW_UP_RECORDED: EventSpec = EventSpec {
    service: "assessment",
    publisher: "assessment",
    name: "follow_up_recorded",
    payload: "earlyhelp.assessment.v1.FollowUpRecorded",
    summary: "The answer to the follow-up check: sustained or not, and whether the family needs help \
              again (then back to the front door).",
};
pub const DIRECTORY_IMPORTED: EventSpec = EventSpec {
    service: "allocation",
    publisher: "allocation",
    name: "directory_imported",
    payload: "earlyhelp.allocation.v1.DirectoryImported",
    summary: "A council's provider directory was imported from Open Referral UK (counts only: created, \
              updated, unchanged, withdrawn, refused).",
};
pub const OFFER_MADE: EventSpec = EventSpec {
    service: "allocation",
    publisher: "allocation",
    name: "offer_made",
    payload: "earlyhelp.allocation.v1.OfferMade",
    summary: "A case ready for allocation was offered to a service (an Early Help Team or a commissioned \
              provider), its place held until it answers.",
};
pub const OFFER_ACCEPTED: EventSpec = EventSpec {
    service: "allocation",
    publisher: "allocation",
    name: "offer_accepted",
    payload: "earlyhelp.allocation.v1.OfferAccepted",
    summary: "The service accepted: the case is allocated to it.",
};
pub const OFFER_DECLINED: EventSpec = EventSpec {
    service: "allocation",
    publisher: "allocation",
    name: "offer_declined",
    payload: "earlyhelp.allocation.v1.OfferDeclined",
    summary: "The service declined (reason code); the case goes to the next candidate or waits.",
};
pub const CASE_WAITING: EventSpec = EventSpec {
    service: "allocation",
    publisher: "allocation",
    name: "case_waiting",
    payload: "earlyhelp.allocation.v1.CaseWaiting",
    summary: "No service can take the case now: it waits on the council's list, in order, and is offered as \
              soon as a place frees.",
};
pub const OFFER_EXPIRED: EventSpec = EventSpec {
    service: "allocation",
    publisher: "allocation",
    name: "offer_expired",
    payload: "earlyhelp.allocation.v1.OfferExpired",
    summary: "The service did not answer within the council's provider response time; the case goes to \
              the next candidate or waits.",
};
pub const WAITING_LIMIT_BREACHED: EventSpec = EventSpec {
    service: "allocation",
    publisher: "allocation",
    name: "waiting_limit_breached",
    payload: "earlyhelp.allocation.v1.WaitingLimitBreached",
    summary: "A case has waited for a place longer than the council's limit (once per case).",
};
pub const LEAD_PRACTITIONER_NAMED: EventSpec = EventSpec {
    service: "allocation",
    publisher: "allocation",
    name: "lead_practitioner_named",
    payload: "earlyhelp.allocation.v1.LeadPractitionerNamed",
    summary: "The practitioner asked to lead the case accepted; the first-contact clock starts.",
};
pub const LEAD_PRACTITIONER_DECLINED: EventSpec = EventSpec {
    service: "allocation",
    publisher: "allocation",
    name: "lead_practitioner_declined",
    payload: "earlyhelp.allocation.v1.LeadPractitionerDeclined",
    summary: "The practitioner asked to lead the case declined, with a reason; the team manager is told.",
};

pub const INTAKE_INBOUND_REFERRAL: Subscription = Subscription {
    consumer: "intake_inbound_referral",
    service: "intake",
    source: Source::Inbound(&INBOUND_REFERRAL),
    summary: "Validates, de-duplicates and stores requests for support.",
};
pub const INTAKE_INBOUND_REFERRAL_URGENT: Subscription = Subscription {
    consumer: "intake_inbound_referral_urgent",
    service: "intake",
    source: Source::Inbound(&INBOUND_REFERRAL_URGENT),
    summary: "The urgent lane: validates, de-duplicates and stores significant-harm referrals ahead of any \
              backlog.",
};
pub const NOTIFICATIONS_REFERRAL_RECEIVED: Subscription = Subscription {
    consumer: "notifications_referral_received",
    service: "notifications",
    source: Source::Event(&REFERRAL_RECEIVED),
    summary: "Acknowledges the referral to the referrer; records unsafe addresses.",
};
pub const NOTIFICATIONS_REFERRAL_RECEIVED_URGENT: Subscription = Subscription {
    consumer: "notifications_referral_received_urgent",
    service: "notifications",
    source: Source::Event(&REFERRAL_RECEIVED_URGENT),
    summary: "The urgent lane: records the referrer's contact details (for the front door's email) and \
              the acknowledgement ahead of any backlog; the referral's ordinary referral_received then \
              finds them recorded.",
};
pub const NOTIFICATIONS_PEOPLE_MERGED: Subscription = Subscription {
    consumer: "notifications_people_merged",
    service: "notifications",
    source: Source::Event(&PEOPLE_MERGED),
    summary: "A person unsafe to contact is suppressed under both ids, so every address held for either \
              record is withheld.",
};
pub const CONSENT_REFERRAL_RECEIVED: Subscription = Subscription {
    consumer: "consent_referral_received",
    service: "consent",
    source: Source::Event(&REFERRAL_RECEIVED),
    summary: "Records the consent the referral carries.",
};

pub const INTAKE_REFER_AGAIN: Subscription = Subscription {
    consumer: "intake_refer_again",
    service: "intake",
    source: Source::Event(&REFER_AGAIN),
    summary: "A new request for support for a family the follow-up check found needs help again, \
              made from the closed case's opening referral and taken through the front door.",
};
pub const INTAKE_SCREEN_REFERRAL: Subscription = Subscription {
    consumer: "intake_screen_referral",
    service: "intake",
    source: Source::Event(&SCREEN_REFERRAL),
    summary: "Screens the referral against the council's rules; stores and announces the decision.",
};
pub const CASEWORK_REFERRAL_RECEIVED: Subscription = Subscription {
    consumer: "casework_referral_received",
    service: "casework",
    source: Source::Event(&REFERRAL_RECEIVED),
    summary: "Opens a case (or attaches the referral to the family's open case) and decides what comes next.",
};
pub const CASEWORK_REFERRAL_RECEIVED_URGENT: Subscription = Subscription {
    consumer: "casework_referral_received_urgent",
    service: "casework",
    source: Source::Event(&REFERRAL_RECEIVED_URGENT),
    summary: "The urgent lane: steps the case up to the front door at once, ahead of any backlog; the \
              referral's ordinary referral_received then finds it handled.",
};
pub const CASEWORK_CONSENT_RECORDED: Subscription = Subscription {
    consumer: "casework_consent_recorded",
    service: "casework",
    source: Source::Event(&CONSENT_RECORDED),
    summary: "Moves cases awaiting consent on to screening.",
};
pub const CASEWORK_CONSENT_WITHDRAWN: Subscription = Subscription {
    consumer: "casework_consent_withdrawn",
    service: "casework",
    source: Source::Event(&CONSENT_WITHDRAWN),
    summary: "Closes the family's open cases when no consent remains.",
};
pub const CASEWORK_SCREENING_DECIDED: Subscription = Subscription {
    consumer: "casework_screening_decided",
    service: "casework",
    source: Source::Event(&SCREENING_DECIDED),
    summary: "Moves the case to ready_for_allocation or closes it with advice.",
};
pub const NOTIFICATIONS_SCREENING_DECIDED: Subscription = Subscription {
    consumer: "notifications_screening_decided",
    service: "notifications",
    source: Source::Event(&SCREENING_DECIDED),
    summary: "Tells the referrer the screening outcome (with the advice, or what is missing).",
};
pub const NOTIFICATIONS_CASE_STEPPED_UP: Subscription = Subscription {
    consumer: "notifications_case_stepped_up",
    service: "notifications",
    source: Source::Event(&CASE_STEPPED_UP),
    summary: "Tells the council's front door at once, and the referrer.",
};
pub const NOTIFICATIONS_CONSENT_REQUESTED: Subscription = Subscription {
    consumer: "notifications_consent_requested",
    service: "notifications",
    source: Source::Event(&CONSENT_REQUESTED),
    summary: "Asks the family for consent (never at an unsafe address).",
};
pub const NOTIFICATIONS_SERVICE_LEVEL_BREACHED: Subscription = Subscription {
    consumer: "notifications_service_level_breached",
    service: "notifications",
    source: Source::Event(&SERVICE_LEVEL_BREACHED),
    summary: "Tells the team manager a service level was breached.",
};
pub const NOTIFICATIONS_LEAD_ASSIGNED: Subscription = Subscription {
    consumer: "notifications_lead_assigned",
    service: "notifications",
    source: Source::Event(&LEAD_ASSIGNED),
    summary: "Tells the family (never at an unsafe address) and the referrer who will help them.",
};
pub const ASSESSMENT_LEAD_ASSIGNED: Subscription = Subscription {
    consumer: "assessment_lead_assigned",
    service: "assessment",
    source: Source::Event(&LEAD_ASSIGNED),
    summary: "Records the case's lead practitioner: they (or a team manager) may open its assessment.",
};
pub const ASSESSMENT_CASE_CLOSED: Subscription = Subscription {
    consumer: "assessment_case_closed",
    service: "assessment",
    source: Source::Event(&CASE_CLOSED),
    summary: "The case ended: its plan's actions are no longer chased and nothing more is recorded on it.",
};
pub const ASSESSMENT_CASE_STEPPED_UP: Subscription = Subscription {
    consumer: "assessment_case_stepped_up",
    service: "assessment",
    source: Source::Event(&CASE_STEPPED_UP),
    summary: "The case went to the front door: its plan's actions are no longer chased.",
};
pub const CASEWORK_PLAN_AGREED: Subscription = Subscription {
    consumer: "casework_plan_agreed",
    service: "casework",
    source: Source::Event(&PLAN_AGREED),
    summary: "The case's plan is agreed (plan_agreed; a later version is noted on the timeline).",
};
pub const CASEWORK_REVIEW_RECORDED: Subscription = Subscription {
    consumer: "casework_review_recorded",
    service: "casework",
    source: Source::Event(&REVIEW_RECORDED),
    summary: "The case is in review; each review is on the timeline.",
};
pub const CASEWORK_CASE_CLOSURE_RECORDED: Subscription = Subscription {
    consumer: "casework_case_closure_recorded",
    service: "casework",
    source: Source::Event(&CASE_CLOSURE_RECORDED),
    summary: "The case closes with its outcomes (closed_outcomes_met, closed_outcomes_not_met or \
              closed_stepped_down), announced as case_closed.",
};
pub const CASEWORK_FOLLOW_UP_DUE: Subscription = Subscription {
    consumer: "casework_follow_up_due",
    service: "casework",
    source: Source::Event(&FOLLOW_UP_DUE),
    summary: "The follow-up check asked of the lead, on the closed case's timeline.",
};
pub const CASEWORK_FOLLOW_UP_RECORDED: Subscription = Subscription {
    consumer: "casework_follow_up_recorded",
    service: "casework",
    source: Source::Event(&FOLLOW_UP_RECORDED),
    summary: "The follow-up answer on the timeline; a family that needs help again is sent back to the \
              front door.",
};
pub const NOTIFICATIONS_ACTION_OVERDUE: Subscription = Subscription {
    consumer: "notifications_action_overdue",
    service: "notifications",
    source: Source::Event(&ACTION_OVERDUE),
    summary: "Reminds the owner of an overdue action (their work mailbox, or the lead's for the family's \
              own actions; the team manager's when none is named).",
};
pub const NOTIFICATIONS_FOLLOW_UP_DUE: Subscription = Subscription {
    consumer: "notifications_follow_up_due",
    service: "notifications",
    source: Source::Event(&FOLLOW_UP_DUE),
    summary: "Asks the lead (or the team manager) whether the closed case's outcomes were sustained.",
};
pub const NOTIFICATIONS_FOLLOW_UP_RECORDED: Subscription = Subscription {
    consumer: "notifications_follow_up_recorded",
    service: "notifications",
    source: Source::Event(&FOLLOW_UP_RECORDED),
    summary: "Tells the front door when a family whose case closed needs help again.",
};
pub const NOTIFICATIONS_OFFER_MADE: Subscription = Subscription {
    consumer: "notifications_offer_made",
    service: "notifications",
    source: Source::Event(&OFFER_MADE),
    summary: "Tells the service offered a case (its offer mailbox) to answer, and by when.",
};
pub const NOTIFICATIONS_OFFER_DECLINED: Subscription = Subscription {
    consumer: "notifications_offer_declined",
    service: "notifications",
    source: Source::Event(&OFFER_DECLINED),
    summary: "Tells the team manager a service declined a case (the reason code).",
};
pub const NOTIFICATIONS_LEAD_PRACTITIONER_DECLINED: Subscription = Subscription {
    consumer: "notifications_lead_practitioner_declined",
    service: "notifications",
    source: Source::Event(&LEAD_PRACTITIONER_DECLINED),
    summary: "Tells the team manager a practitioner declined to lead a case (the reason code).",
};
pub const ALLOCATION_REFERRAL_RECEIVED: Subscription = Subscription {
    consumer: "allocation_referral_received",
    service: "allocation",
    source: Source::Event(&REFERRAL_RECEIVED),
    summary: "Keeps the children's dates of birth of each referral (no names), for matching by age.",
};
pub const ALLOCATION_CASE_READY: Subscription = Subscription {
    consumer: "allocation_case_ready",
    service: "allocation",
    source: Source::Event(&CASE_READY_FOR_ALLOCATION),
    summary: "Matches the case to a service and offers it, or puts it on the waiting list.",
};
pub const ALLOCATION_CASE_CLOSED: Subscription = Subscription {
    consumer: "allocation_case_closed",
    service: "allocation",
    source: Source::Event(&CASE_CLOSED),
    summary: "Releases the place the case held and offers it to the next waiting case.",
};
pub const ALLOCATION_CASE_STEPPED_UP: Subscription = Subscription {
    consumer: "allocation_case_stepped_up",
    service: "allocation",
    source: Source::Event(&CASE_STEPPED_UP),
    summary: "A case gone to the front door leaves allocation: its place is released and offered on.",
};
pub const CASEWORK_OFFER_MADE: Subscription = Subscription {
    consumer: "casework_offer_made",
    service: "casework",
    source: Source::Event(&OFFER_MADE),
    summary: "The case is being allocated (allocating): the offer on its timeline.",
};
pub const CASEWORK_OFFER_ACCEPTED: Subscription = Subscription {
    consumer: "casework_offer_accepted",
    service: "casework",
    source: Source::Event(&OFFER_ACCEPTED),
    summary: "The case is allocated.",
};
pub const CASEWORK_OFFER_DECLINED: Subscription = Subscription {
    consumer: "casework_offer_declined",
    service: "casework",
    source: Source::Event(&OFFER_DECLINED),
    summary: "The decline on the case's timeline.",
};
pub const CASEWORK_CASE_WAITING: Subscription = Subscription {
    consumer: "casework_case_waiting",
    service: "casework",
    source: Source::Event(&CASE_WAITING),
    summary: "The case waits for a provider (waiting_for_provider).",
};
pub const CASEWORK_LEAD_PRACTITIONER_NAMED: Subscription = Subscription {
    consumer: "casework_lead_practitioner_named",
    service: "casework",
    source: Source::Event(&LEAD_PRACTITIONER_NAMED),
    summary: "The lead practitioner on the case's timeline; the first-contact clock starts.",
};
pub const CASEWORK_ASSESSMENT_OPENED: Subscription = Subscription {
    consumer: "casework_assessment_opened",
    service: "casework",
    source: Source::Event(&ASSESSMENT_OPENED),
    summary: "The case is assessment_open (a later version is noted on the timeline).",
};
pub const CASEWORK_ASSESSMENT_FINALISED: Subscription = Subscription {
    consumer: "casework_assessment_finalised",
    service: "casework",
    source: Source::Event(&ASSESSMENT_FINALISED),
    summary: "The case is assessed; the assessment clock stops.",
};
pub const CASEWORK_LEAD_PRACTITIONER_DECLINED: Subscription = Subscription {
    consumer: "casework_lead_practitioner_declined",
    service: "casework",
    source: Source::Event(&LEAD_PRACTITIONER_DECLINED),
    summary: "A practitioner's refusal to lead on the case's timeline.",
};
pub const CASEWORK_OFFER_EXPIRED: Subscription = Subscription {
    consumer: "casework_offer_expired",
    service: "casework",
    source: Source::Event(&OFFER_EXPIRED),
    summary: "The unanswered offer on the case's timeline.",
};
pub const CASEWORK_WAITING_LIMIT_BREACHED: Subscription = Subscription {
    consumer: "casework_waiting_limit_breached",
    service: "casework",
    source: Source::Event(&WAITING_LIMIT_BREACHED),
    summary: "The waiting-list breach on the case's timeline (the team manager is told).",
};

// The reporting read model: figures per council from the services' own events.
pub const REPORTING_REFERRAL_RECEIVED: Subscription = Subscription {
    consumer: "reporting_referral_received",
    service: "reporting",
    source: Source::Event(&REFERRAL_RECEIVED),
    summary: "Keeps for the council's figures only the referral's ids, arrival, source system, route, need codes and locality (from the postcode; the postcode itself is not kept).",
};
pub const REPORTING_SCREENING_DECIDED: Subscription = Subscription {
    consumer: "reporting_screening_decided",
    service: "reporting",
    source: Source::Event(&SCREENING_DECIDED),
    summary: "Keeps when each referral was screened and the outcome (timeliness of screening).",
};
pub const REPORTING_CASE_STATE_CHANGED: Subscription = Subscription {
    consumer: "reporting_case_state_changed",
    service: "reporting",
    source: Source::Event(&CASE_STATE_CHANGED),
    summary: "Keeps every transition of each case (allocation starts the assessment clock; closures and step-ups leave the waiting list).",
};
pub const REPORTING_OFFER_ACCEPTED: Subscription = Subscription {
    consumer: "reporting_offer_accepted",
    service: "reporting",
    source: Source::Event(&OFFER_ACCEPTED),
    summary: "A case allocated: it leaves the waiting list, and the assessment clock starts.",
};
pub const REPORTING_CASE_WAITING: Subscription = Subscription {
    consumer: "reporting_case_waiting",
    service: "reporting",
    source: Source::Event(&CASE_WAITING),
    summary: "A case joins the waiting list (since when).",
};
pub const REPORTING_ASSESSMENT_FINALISED: Subscription = Subscription {
    consumer: "reporting_assessment_finalised",
    service: "reporting",
    source: Source::Event(&ASSESSMENT_FINALISED),
    summary: "When each case's Early Help Assessment was finalised (timeliness of assessment).",
};
pub const REPORTING_SCORES_RECORDED: Subscription = Subscription {
    consumer: "reporting_scores_recorded",
    service: "reporting",
    source: Source::Event(&SCORES_RECORDED),
    summary: "Distance-travelled scores per headline problem (score change, first to latest).",
};
pub const REPORTING_CASE_CLOSURE_RECORDED: Subscription = Subscription {
    consumer: "reporting_case_closure_recorded",
    service: "reporting",
    source: Source::Event(&CASE_CLOSURE_RECORDED),
    summary: "Closures with, per headline problem, whether the outcome was met (Supporting Families outcomes).",
};
pub const REPORTING_FOLLOW_UP_RECORDED: Subscription = Subscription {
    consumer: "reporting_follow_up_recorded",
    service: "reporting",
    source: Source::Event(&FOLLOW_UP_RECORDED),
    summary: "Whether outcomes were sustained at the follow-up check.",
};

/// A person's details were corrected (rectification).
pub const PERSON_CORRECTED: EventSpec = EventSpec {
    service: "intake",
    publisher: "intake",
    name: "person_corrected",
    payload: "earlyhelp.intake.v1.PersonCorrected",
    summary: "A person's details were corrected (CorrectPerson): the corrected names, date of birth or \
              email (only what changed) and the email replaced, for every service holding a copy.",
};
pub const CASEWORK_PERSON_CORRECTED: Subscription = Subscription {
    consumer: "casework_person_corrected",
    service: "casework",
    source: Source::Event(&PERSON_CORRECTED),
    summary: "Applies a correction to the person's contact on each of the family's cases.",
};
pub const NOTIFICATIONS_PERSON_CORRECTED: Subscription = Subscription {
    consumer: "notifications_person_corrected",
    service: "notifications",
    source: Source::Event(&PERSON_CORRECTED),
    summary: "Holds the corrected email for the person (an unsafe person's every address stays suppressed).",
};
pub const RECORDS_PERSON_CORRECTED: Subscription = Subscription {
    consumer: "records_person_corrected",
    service: "records",
    source: Source::Event(&PERSON_CORRECTED),
    summary: "A child's corrected date of birth, for retention.",
};

// The family's data rights (records).

/// Records orders the destruction of a family's records (past retention, no legal hold).
pub const DESTRUCTION_ORDERED: EventSpec = EventSpec {
    service: "records",
    publisher: "records",
    name: "destruction_ordered",
    payload: "earlyhelp.records.v1.DestructionOrdered",
    summary: "A family's records are past the council's retention and not held: every service deletes \
              every row it holds about them (outbox rows carrying their ids included) and confirms. Ids only.",
};
/// intake confirms it destroyed a family's records.
pub const INTAKE_RECORDS_DESTROYED: EventSpec = EventSpec {
    service: "intake",
    publisher: "intake",
    name: "family_records_destroyed",
    payload: "earlyhelp.records.v1.RecordsDestroyed",
    summary: "intake deleted every row it held about a destroyed family (the destruction's id and a count only).",
};
/// consent confirms it destroyed a family's records.
pub const CONSENT_RECORDS_DESTROYED: EventSpec = EventSpec {
    service: "consent",
    publisher: "consent",
    name: "family_records_destroyed",
    payload: "earlyhelp.records.v1.RecordsDestroyed",
    summary: "consent deleted every row it held about a destroyed family (the destruction's id and a count only).",
};
/// casework confirms it destroyed a family's records.
pub const CASEWORK_RECORDS_DESTROYED: EventSpec = EventSpec {
    service: "casework",
    publisher: "casework",
    name: "family_records_destroyed",
    payload: "earlyhelp.records.v1.RecordsDestroyed",
    summary: "casework deleted every row it held about a destroyed family (the destruction's id and a count only).",
};
/// assessment confirms it destroyed a family's records.
pub const ASSESSMENT_RECORDS_DESTROYED: EventSpec = EventSpec {
    service: "assessment",
    publisher: "assessment",
    name: "family_records_destroyed",
    payload: "earlyhelp.records.v1.RecordsDestroyed",
    summary: "assessment deleted every row it held about a destroyed family (the destruction's id and a count only).",
};
/// allocation confirms it destroyed a family's records.
pub const ALLOCATION_RECORDS_DESTROYED: EventSpec = EventSpec {
    service: "allocation",
    publisher: "allocation",
    name: "family_records_destroyed",
    payload: "earlyhelp.records.v1.RecordsDestroyed",
    summary: "allocation deleted every row it held about a destroyed family (the destruction's id and a count only).",
};
/// notifications confirms it destroyed a family's records.
pub const NOTIFICATIONS_RECORDS_DESTROYED: EventSpec = EventSpec {
    service: "notifications",
    publisher: "notifications",
    name: "family_records_destroyed",
    payload: "earlyhelp.records.v1.RecordsDestroyed",
    summary: "notifications deleted every row it held about a destroyed family (the destruction's id and a count only).",
};
/// reporting confirms it destroyed a family's records.
pub const REPORTING_RECORDS_DESTROYED: EventSpec = EventSpec {
    service: "reporting",
    publisher: "reporting",
    name: "family_records_destroyed",
    payload: "earlyhelp.records.v1.RecordsDestroyed",
    summary: "reporting deleted every row it held about a destroyed family (the destruction's id and a count only).",
};
/// the gateway confirms it destroyed a family's records.
pub const GATEWAY_RECORDS_DESTROYED: EventSpec = EventSpec {
    service: "gateway",
    publisher: "gateway",
    name: "family_records_destroyed",
    payload: "earlyhelp.records.v1.RecordsDestroyed",
    summary: "the gateway deleted every row it held about a destroyed family (the destruction's id and a count only).",
};
pub const INTAKE_DESTRUCTION_ORDERED: Subscription = Subscription {
    consumer: "intake_destruction_ordered",
    service: "intake",
    source: Source::Event(&DESTRUCTION_ORDERED),
    summary: "Deletes every row intake holds about the family, and its outbox rows carrying their ids, in one transaction; confirms.",
};
pub const RECORDS_INTAKE_RECORDS_DESTROYED: Subscription = Subscription {
    consumer: "records_intake_records_destroyed",
    service: "records",
    source: Source::Event(&INTAKE_RECORDS_DESTROYED),
    summary: "intake's confirmation, on the destruction certificate.",
};
pub const CONSENT_DESTRUCTION_ORDERED: Subscription = Subscription {
    consumer: "consent_destruction_ordered",
    service: "consent",
    source: Source::Event(&DESTRUCTION_ORDERED),
    summary: "Deletes every row consent holds about the family, and its outbox rows carrying their ids, in one transaction; confirms.",
};
pub const RECORDS_CONSENT_RECORDS_DESTROYED: Subscription = Subscription {
    consumer: "records_consent_records_destroyed",
    service: "records",
    source: Source::Event(&CONSENT_RECORDS_DESTROYED),
    summary: "consent's confirmation, on the destruction certificate.",
};
pub const CASEWORK_DESTRUCTION_ORDERED: Subscription = Subscription {
    consumer: "casework_destruction_ordered",
    service: "casework",
    source: Source::Event(&DESTRUCTION_ORDERED),
    summary: "Deletes every row casework holds about the family, and its outbox rows carrying their ids, in one transaction; confirms.",
};
pub const RECORDS_CASEWORK_RECORDS_DESTROYED: Subscription = Subscription {
    consumer: "records_casework_records_destroyed",
    service: "records",
    source: Source::Event(&CASEWORK_RECORDS_DESTROYED),
    summary: "casework's confirmation, on the destruction certificate.",
};
pub const ASSESSMENT_DESTRUCTION_ORDERED: Subscription = Subscription {
    consumer: "assessment_destruction_ordered",
    service: "assessment",
    source: Source::Event(&DESTRUCTION_ORDERED),
    summary: "Deletes every row assessment holds about the family, and its outbox rows carrying their ids, in one transaction; confirms.",
};
pub const RECORDS_ASSESSMENT_RECORDS_DESTROYED: Subscription = Subscription {
    consumer: "records_assessment_records_destroyed",
    service: "records",
    source: Source::Event(&ASSESSMENT_RECORDS_DESTROYED),
    summary: "assessment's confirmation, on the destruction certificate.",
};
pub const ALLOCATION_DESTRUCTION_ORDERED: Subscription = Subscription {
    consumer: "allocation_destruction_ordered",
    service: "allocation",
    source: Source::Event(&DESTRUCTION_ORDERED),
    summary: "Deletes every row allocation holds about the family, and its outbox rows carrying their ids, in one transaction; confirms.",
};
pub const RECORDS_ALLOCATION_RECORDS_DESTROYED: Subscription = Subscription {
    consumer: "records_allocation_records_destroyed",
    service: "records",
    source: Source::Event(&ALLOCATION_RECORDS_DESTROYED),
    summary: "allocation's confirmation, on the destruction certificate.",
};
pub const NOTIFICATIONS_DESTRUCTION_ORDERED: Subscription = Subscription {
    consumer: "notifications_destruction_ordered",
    service: "notifications",
    source: Source::Event(&DESTRUCTION_ORDERED),
    summary: "Deletes every row notifications holds about the family, and its outbox rows carrying their ids, in one transaction; confirms.",
};
pub const RECORDS_NOTIFICATIONS_RECORDS_DESTROYED: Subscription = Subscription {
    consumer: "records_notifications_records_destroyed",
    service: "records",
    source: Source::Event(&NOTIFICATIONS_RECORDS_DESTROYED),
    summary: "notifications's confirmation, on the destruction certificate.",
};
pub const REPORTING_DESTRUCTION_ORDERED: Subscription = Subscription {
    consumer: "reporting_destruction_ordered",
    service: "reporting",
    source: Source::Event(&DESTRUCTION_ORDERED),
    summary: "Deletes every row reporting holds about the family, and its outbox rows carrying their ids, in one transaction; confirms.",
};
pub const RECORDS_REPORTING_RECORDS_DESTROYED: Subscription = Subscription {
    consumer: "records_reporting_records_destroyed",
    service: "records",
    source: Source::Event(&REPORTING_RECORDS_DESTROYED),
    summary: "reporting's confirmation, on the destruction certificate.",
};
pub const GATEWAY_DESTRUCTION_ORDERED: Subscription = Subscription {
    consumer: "gateway_destruction_ordered",
    service: "gateway",
    source: Source::Event(&DESTRUCTION_ORDERED),
    summary: "Deletes every row the gateway holds about the family (override requests, webhook deliveries, \
              pending ones included, so nothing more is sent; idempotency answers naming its referrals), \
              and its outbox rows carrying their ids, in one transaction; confirms.",
};
pub const RECORDS_GATEWAY_RECORDS_DESTROYED: Subscription = Subscription {
    consumer: "records_gateway_records_destroyed",
    service: "records",
    source: Source::Event(&GATEWAY_RECORDS_DESTROYED),
    summary: "the gateway's confirmation, on the destruction certificate.",
};
pub const RECORDS_REFERRAL_RECEIVED: Subscription = Subscription {
    consumer: "records_referral_received",
    service: "records",
    source: Source::Event(&REFERRAL_RECEIVED),
    summary: "Indexes which referral and people make up a family, and children's dates of birth (ids and dates only).",
};
pub const RECORDS_PEOPLE_MERGED: Subscription = Subscription {
    consumer: "records_people_merged",
    service: "records",
    source: Source::Event(&PEOPLE_MERGED),
    summary: "Two person records are one: the family index follows the merge.",
};
pub const RECORDS_CASE_STATE_CHANGED: Subscription = Subscription {
    consumer: "records_case_state_changed",
    service: "records",
    source: Source::Event(&CASE_STATE_CHANGED),
    summary: "Indexes each case's family and when it closed (or reopened), for retention.",
};
pub const GATEWAY_CASE_STATE_CHANGED: Subscription = Subscription {
    consumer: "gateway_case_state_changed",
    service: "gateway",
    source: Source::Event(&CASE_STATE_CHANGED),
    summary: "A case reached a new public status (received, screened, allocated, stepped up, closed): \
              the upstream system whose referral opened it is told by webhook, if it has an endpoint \
              (ids and the status only).",
};

/// Every event the platform publishes.
pub const EVENTS: &[&EventSpec] = &[
    &REFERRAL_RECEIVED,
    &REFERRAL_RECEIVED_URGENT,
    &REFERRAL_REJECTED,
    &PEOPLE_MERGED,
    &CONSENT_RECORDED,
    &CONSENT_WITHDRAWN,
    &SAFEGUARDING_OVERRIDE_GRANTED,
    &MESSAGE_SENT,
    &FRONT_DOOR_OVERDUE,
    &SCREEN_REFERRAL,
    &REFER_AGAIN,
    &SCREENING_DECIDED,
    &CASE_STATE_CHANGED,
    &CASE_STEPPED_UP,
    &CASE_READY_FOR_ALLOCATION,
    &CASE_CLOSED,
    &CONSENT_REQUESTED,
    &SERVICE_LEVEL_BREACHED,
    &LEAD_ASSIGNED,
    &ASSESSMENT_OPENED,
    &ASSESSMENT_FINALISED,
    &PLAN_AGREED,
    &ACTION_OVERDUE,
    &REVIEW_RECORDED,
    &SCORES_RECORDED,
    &CASE_CLOSURE_RECORDED,
    &FOLLOW_UP_DUE,
    &FOLLOW_UP_RECORDED,
    &DIRECTORY_IMPORTED,
    &OFFER_MADE,
    &OFFER_ACCEPTED,
    &OFFER_DECLINED,
    &CASE_WAITING,
    &OFFER_EXPIRED,
    &WAITING_LIMIT_BREACHED,
    &LEAD_PRACTITIONER_NAMED,
    &LEAD_PRACTITIONER_DECLINED,
    &PERSON_CORRECTED,
    &DESTRUCTION_ORDERED,
    &INTAKE_RECORDS_DESTROYED,
    &CONSENT_RECORDS_DESTROYED,
    &CASEWORK_RECORDS_DESTROYED,
    &ASSESSMENT_RECORDS_DESTROYED,
    &ALLOCATION_RECORDS_DESTROYED,
    &NOTIFICATIONS_RECORDS_DESTROYED,
    &REPORTING_RECORDS_DESTROYED,
    &GATEWAY_RECORDS_DESTROYED,
];

/// What upstream systems may publish.
pub const INBOUND: &[&InboundSpec] = &[&INBOUND_REFERRAL, &INBOUND_REFERRAL_URGENT];

/// Every durable consumer.
pub const SUBSCRIPTIONS: &[&Subscription] = &[
    &GATEWAY_CASE_STATE_CHANGED,
    &INTAKE_INBOUND_REFERRAL,
    &INTAKE_INBOUND_REFERRAL_URGENT,
    &NOTIFICATIONS_REFERRAL_RECEIVED,
    &NOTIFICATIONS_REFERRAL_RECEIVED_URGENT,
    &NOTIFICATIONS_PEOPLE_MERGED,
    &CONSENT_REFERRAL_RECEIVED,
    &INTAKE_SCREEN_REFERRAL,
    &INTAKE_REFER_AGAIN,
    &CASEWORK_REFERRAL_RECEIVED,
    &CASEWORK_REFERRAL_RECEIVED_URGENT,
    &CASEWORK_CONSENT_RECORDED,
    &CASEWORK_CONSENT_WITHDRAWN,
    &CASEWORK_SCREENING_DECIDED,
    &NOTIFICATIONS_SCREENING_DECIDED,
    &NOTIFICATIONS_CASE_STEPPED_UP,
    &NOTIFICATIONS_CONSENT_REQUESTED,
    &NOTIFICATIONS_SERVICE_LEVEL_BREACHED,
    &NOTIFICATIONS_LEAD_ASSIGNED,
    &ASSESSMENT_LEAD_ASSIGNED,
    &ASSESSMENT_CASE_CLOSED,
    &ASSESSMENT_CASE_STEPPED_UP,
    &CASEWORK_PLAN_AGREED,
    &CASEWORK_REVIEW_RECORDED,
    &CASEWORK_CASE_CLOSURE_RECORDED,
    &CASEWORK_FOLLOW_UP_DUE,
    &CASEWORK_FOLLOW_UP_RECORDED,
    &NOTIFICATIONS_ACTION_OVERDUE,
    &NOTIFICATIONS_FOLLOW_UP_DUE,
    &NOTIFICATIONS_FOLLOW_UP_RECORDED,
    &NOTIFICATIONS_OFFER_MADE,
    &NOTIFICATIONS_OFFER_DECLINED,
    &NOTIFICATIONS_LEAD_PRACTITIONER_DECLINED,
    &ALLOCATION_REFERRAL_RECEIVED,
    &ALLOCATION_CASE_READY,
    &ALLOCATION_CASE_CLOSED,
    &ALLOCATION_CASE_STEPPED_UP,
    &CASEWORK_OFFER_MADE,
    &CASEWORK_OFFER_ACCEPTED,
    &CASEWORK_OFFER_DECLINED,
    &CASEWORK_OFFER_EXPIRED,
    &CASEWORK_WAITING_LIMIT_BREACHED,
    &CASEWORK_LEAD_PRACTITIONER_NAMED,
    &CASEWORK_LEAD_PRACTITIONER_DECLINED,
    &CASEWORK_CASE_WAITING,
    &CASEWORK_ASSESSMENT_OPENED,
    &CASEWORK_ASSESSMENT_FINALISED,
    &REPORTING_REFERRAL_RECEIVED,
    &REPORTING_SCREENING_DECIDED,
    &REPORTING_CASE_STATE_CHANGED,
    &REPORTING_OFFER_ACCEPTED,
    &REPORTING_CASE_WAITING,
    &REPORTING_ASSESSMENT_FINALISED,
    &REPORTING_SCORES_RECORDED,
    &REPORTING_CASE_CLOSURE_RECORDED,
    &REPORTING_FOLLOW_UP_RECORDED,
    &INTAKE_DESTRUCTION_ORDERED,
    &RECORDS_INTAKE_RECORDS_DESTROYED,
    &CONSENT_DESTRUCTION_ORDERED,
    &RECORDS_CONSENT_RECORDS_DESTROYED,
    &CASEWORK_DESTRUCTION_ORDERED,
    &RECORDS_CASEWORK_RECORDS_DESTROYED,
    &ASSESSMENT_DESTRUCTION_ORDERED,
    &RECORDS_ASSESSMENT_RECORDS_DESTROYED,
    &ALLOCATION_DESTRUCTION_ORDERED,
    &RECORDS_ALLOCATION_RECORDS_DESTROYED,
    &NOTIFICATIONS_DESTRUCTION_ORDERED,
    &RECORDS_NOTIFICATIONS_RECORDS_DESTROYED,
    &REPORTING_DESTRUCTION_ORDERED,
    &RECORDS_REPORTING_RECORDS_DESTROYED,
    &GATEWAY_DESTRUCTION_ORDERED,
    &RECORDS_GATEWAY_RECORDS_DESTROYED,
    &RECORDS_REFERRAL_RECEIVED,
    &RECORDS_PEOPLE_MERGED,
    &RECORDS_CASE_STATE_CHANGED,
    &CASEWORK_PERSON_CORRECTED,
    &NOTIFICATIONS_PERSON_CORRECTED,
    &RECORDS_PERSON_CORRECTED,
];
