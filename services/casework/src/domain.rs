//! The case and its rules, with no I/O: the states, which transitions are legal, the service-level
//! clocks and what each one does when it runs out.
use std::fmt;
use std::str::FromStr;

/// Where a case is in the front-door journey.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Just created from `referral_received`; decided at once what comes next.
    Requested,
    /// No consent to receive Early Help yet: chased, then closed.
    AwaitingConsent,
    /// Consent held; intake screens the request.
    Screening,
    ReadyForAllocation,
    /// Offered to a service (an Early Help Team or a commissioned provider); waiting for its answer.
    Allocating,
    /// No service can take it now: on the council's waiting list.
    WaitingForProvider,
    /// A service accepted: the family has someone to help them.
    Allocated,
    /// The lead opened the Early Help Assessment: the agencies are adding their sections.
    AssessmentOpen,
    /// The assessment is finalised (a later change is a new version): the plan comes next.
    Assessed,
    /// The plan is agreed with the family (a later version is noted).
    PlanAgreed,
    /// The plan has been reviewed at least once.
    InReview,
    /// Sent to the council's front door (significant harm, or a practitioner's call).
    SteppedUp,
    ClosedAdviceGiven,
    ClosedNoConsent,
    ClosedWithdrawn,
    /// Closed with every Supporting Families outcome met (a follow-up check in six months).
    ClosedOutcomesMet,
    /// Closed with some outcome not met.
    ClosedOutcomesNotMet,
    /// Closed and stepped down to universal or community ("earliest help") services.
    ClosedSteppedDown,
}

impl State {
    pub const ALL: [State; 18] = [
        State::Requested,
        State::AwaitingConsent,
        State::Screening,
        State::ReadyForAllocation,
        State::Allocating,
        State::WaitingForProvider,
        State::Allocated,
        State::AssessmentOpen,
        State::Assessed,
        State::PlanAgreed,
        State::InReview,
        State::SteppedUp,
        State::ClosedAdviceGiven,
        State::ClosedNoConsent,
        State::ClosedWithdrawn,
        State::ClosedOutcomesMet,
        State::ClosedOutcomesNotMet,
        State::ClosedSteppedDown,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            State::Requested => "requested",
            State::AwaitingConsent => "awaiting_consent",
            State::Screening => "screening",
            State::ReadyForAllocation => "ready_for_allocation",
            State::Allocating => "allocating",
            State::WaitingForProvider => "waiting_for_provider",
            State::Allocated => "allocated",
            State::AssessmentOpen => "assessment_open",
            State::Assessed => "assessed",
            State::PlanAgreed => "plan_agreed",
            State::InReview => "in_review",
            State::SteppedUp => "stepped_up",
            State::ClosedAdviceGiven => "closed_advice_given",
            State::ClosedNoConsent => "closed_no_consent",
            State::ClosedWithdrawn => "closed_withdrawn",
            State::ClosedOutcomesMet => "closed_outcomes_met",
            State::ClosedOutcomesNotMet => "closed_outcomes_not_met",
            State::ClosedSteppedDown => "closed_stepped_down",
        }
    }

    /// Still with Early Help at the front door: new referrals for the family attach to it.
    pub const fn is_open(self) -> bool {
        matches!(
            self,
            State::Requested
                | State::AwaitingConsent
                | State::Screening
                | State::ReadyForAllocation
                | State::Allocating
                | State::WaitingForProvider
                | State::Allocated
                | State::AssessmentOpen
                | State::Assessed
                | State::PlanAgreed
                | State::InReview
        )
    }

    pub const fn is_closed(self) -> bool {
        matches!(
            self,
            State::ClosedAdviceGiven
                | State::ClosedNoConsent
                | State::ClosedWithdrawn
                | State::ClosedOutcomesMet
                | State::ClosedOutcomesNotMet
                | State::ClosedSteppedDown
        )
    }

    /// Where a closure with outcomes (assessment's `case_closure_recorded`) of `kind` takes a
    /// case: `outcomes_met`, `outcomes_not_met` or `stepped_down`.
    pub fn closure_of(kind: &str) -> Option<State> {
        match kind {
            "outcomes_met" => Some(State::ClosedOutcomesMet),
            "outcomes_not_met" => Some(State::ClosedOutcomesNotMet),
            "stepped_down" => Some(State::ClosedSteppedDown),
            _ => None,
        }
    }

    /// May a case in this state move to `to`?
    pub const fn may_move_to(self, to: State) -> bool {
        use State::*;
        matches!(
            (self, to),
            (Requested, AwaitingConsent)
                | (Requested, Screening)
                | (Requested, ReadyForAllocation) // a step-down from social care with consent
                | (Requested, SteppedUp)
                | (AwaitingConsent, Screening)
                | (AwaitingConsent, ReadyForAllocation) // a step-down once consent arrives
                | (AwaitingConsent, SteppedUp)
                | (AwaitingConsent, ClosedAdviceGiven) // refusal to engage: advice
                | (AwaitingConsent, ClosedNoConsent)
                | (AwaitingConsent, ClosedWithdrawn)
                | (Screening, ReadyForAllocation)
                | (Screening, SteppedUp)
                | (Screening, ClosedAdviceGiven)
                | (Screening, ClosedWithdrawn)
                | (ReadyForAllocation, SteppedUp)
                | (ReadyForAllocation, ClosedWithdrawn)
                // allocation's answers (services/allocation)
                | (ReadyForAllocation, Allocating)
                | (ReadyForAllocation, WaitingForProvider)
                | (Allocating, Allocated)
                // an acceptance handled before the offer (or the wait) it ends: each of
                // allocation's events has its own consumer
                | (ReadyForAllocation, Allocated)
                | (WaitingForProvider, Allocated)
                | (Allocating, WaitingForProvider)
                | (WaitingForProvider, Allocating)
                | (Allocating, SteppedUp)
                | (Allocating, ClosedWithdrawn)
                | (WaitingForProvider, SteppedUp)
                | (WaitingForProvider, ClosedWithdrawn)
                | (Allocated, SteppedUp)
                | (Allocated, ClosedWithdrawn)
                // assessment's (services/assessment)
                | (Allocated, AssessmentOpen)
                | (AssessmentOpen, Assessed)
                | (Allocated, Assessed) // finalised handled before opened
                | (AssessmentOpen, SteppedUp)
                | (AssessmentOpen, ClosedWithdrawn)
                | (Assessed, SteppedUp)
                | (Assessed, ClosedWithdrawn)
                // the plan, its reviews and the closure with outcomes (each of assessment's
                // events has its own consumer: a later step may be handled before an earlier one)
                | (Allocated, PlanAgreed)
                | (AssessmentOpen, PlanAgreed)
                | (Assessed, PlanAgreed)
                | (Allocated, InReview)
                | (AssessmentOpen, InReview)
                | (Assessed, InReview)
                | (PlanAgreed, InReview)
                | (PlanAgreed, SteppedUp)
                | (PlanAgreed, ClosedWithdrawn)
                | (InReview, SteppedUp)
                | (InReview, ClosedWithdrawn)
                | (Allocated | AssessmentOpen | Assessed | PlanAgreed | InReview,
                   ClosedOutcomesMet | ClosedOutcomesNotMet | ClosedSteppedDown)
        )
    }

    /// `Ok(to)` when the move is legal, otherwise why not.
    pub fn move_to(self, to: State) -> Result<State, IllegalTransition> {
        if self.may_move_to(to) {
            Ok(to)
        } else {
            Err(IllegalTransition { from: self, to })
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for State {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        State::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown case state {s:?}"))
    }
}

/// A transition the state machine refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a case that is {from} cannot become {to}")]
pub struct IllegalTransition {
    pub from: State,
    pub to: State,
}

/// A service-level clock of a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimerKind {
    /// Started when screening starts; runs out → a breach (the manager is told).
    ScreeningDecision,
    /// Started when the case waits for consent; runs out → the family is asked again.
    ConsentChase,
    /// Started with the chase; runs out → the case closes for lack of consent.
    ConsentClose,
    /// Started when the lead practitioner is named; runs out before first contact with the
    /// family is recorded → a breach (the manager is told).
    FirstContact,
    /// Started when the case is allocated; runs out before its assessment is finalised → a
    /// breach (the manager is told).
    Assessment,
}

impl TimerKind {
    pub const ALL: [TimerKind; 5] = [
        TimerKind::ScreeningDecision,
        TimerKind::ConsentChase,
        TimerKind::ConsentClose,
        TimerKind::FirstContact,
        TimerKind::Assessment,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            TimerKind::ScreeningDecision => "screening_decision",
            TimerKind::ConsentChase => "consent_chase",
            TimerKind::ConsentClose => "consent_close",
            TimerKind::FirstContact => "first_contact",
            TimerKind::Assessment => "assessment",
        }
    }

    /// The states the clock runs in: a move to any other cancels it.
    pub const fn states(self) -> &'static [State] {
        match self {
            TimerKind::ScreeningDecision => &[State::Screening],
            TimerKind::ConsentChase | TimerKind::ConsentClose => &[State::AwaitingConsent],
            // First contact is owed whatever the assessment's progress.
            TimerKind::FirstContact => &[
                State::Allocated,
                State::AssessmentOpen,
                State::Assessed,
                State::PlanAgreed,
                State::InReview,
            ],
            TimerKind::Assessment => &[State::Allocated, State::AssessmentOpen],
        }
    }

    /// Does the clock run in `state`?
    pub fn runs_in(self, state: State) -> bool {
        self.states().contains(&state)
    }
}

impl FromStr for TimerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        TimerKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown timer {s:?}"))
    }
}

/// What a practitioner may close a case as (`CloseCase`).
pub fn closing_outcome(s: &str) -> Option<State> {
    match s {
        "closed_advice_given" => Some(State::ClosedAdviceGiven),
        "closed_no_consent" => Some(State::ClosedNoConsent),
        "closed_withdrawn" => Some(State::ClosedWithdrawn),
        _ => None,
    }
}

/// Where a new case goes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opening {
    pub significant_harm_risk: bool,
    pub step_down: bool,
    pub consent_held: bool,
}

impl Opening {
    /// Significant harm goes to the front door whatever else is missing; a step-down from social
    /// care skips screening (social care has made the threshold decision) but still needs consent;
    /// everything else is screened once consent is held.
    pub const fn first_state(self) -> State {
        if self.significant_harm_risk {
            State::SteppedUp
        } else if !self.consent_held {
            State::AwaitingConsent
        } else if self.step_down {
            State::ReadyForAllocation
        } else {
            State::Screening
        }
    }
}

/// Where a case waiting for consent goes once it arrives.
pub const fn on_consent(step_down: bool) -> State {
    if step_down {
        State::ReadyForAllocation
    } else {
        State::Screening
    }
}

/// Where a screening outcome takes a case in screening; `None`: it stays (more information
/// needed).
pub fn on_screening(outcome: &str) -> Result<Option<State>, String> {
    match outcome {
        "accepted_for_early_help" => Ok(Some(State::ReadyForAllocation)),
        "advice_and_signpost" => Ok(Some(State::ClosedAdviceGiven)),
        "step_up_significant_harm" => Ok(Some(State::SteppedUp)),
        "more_information_needed" => Ok(None),
        other => Err(format!("unknown screening outcome {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in State::ALL {
            assert_eq!(s.as_str().parse::<State>(), Ok(s));
        }
        for k in TimerKind::ALL {
            assert_eq!(k.as_str().parse::<TimerKind>(), Ok(k));
        }
        assert!("closed".parse::<State>().is_err());
    }

    #[test]
    fn closed_and_stepped_up_cases_go_nowhere() {
        for from in State::ALL.into_iter().filter(|s| !s.is_open()) {
            for to in State::ALL {
                assert_eq!(
                    from.move_to(to),
                    Err(IllegalTransition { from, to }),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn nothing_returns_to_requested_and_nothing_moves_to_itself() {
        for from in State::ALL {
            assert!(!from.may_move_to(State::Requested));
            assert!(!from.may_move_to(from));
        }
    }

    #[test]
    fn every_open_state_can_step_up() {
        for from in State::ALL.into_iter().filter(|s| s.is_open()) {
            assert!(from.may_move_to(State::SteppedUp), "{from}");
        }
    }

    #[test]
    fn ready_for_allocation_needs_consent_first() {
        // Only screening, or a step-down opening/awaiting consent, reaches it.
        let into: Vec<State> = State::ALL
            .into_iter()
            .filter(|s| s.may_move_to(State::ReadyForAllocation))
            .collect();
        assert_eq!(
            into,
            vec![State::Requested, State::AwaitingConsent, State::Screening]
        );
        assert_eq!(
            State::ReadyForAllocation.move_to(State::ClosedNoConsent),
            Err(IllegalTransition {
                from: State::ReadyForAllocation,
                to: State::ClosedNoConsent
            })
        );
    }

    #[test]
    fn allocation_moves_only_after_ready_for_allocation() {
        use State::*;
        let into = |to: State| -> Vec<State> {
            State::ALL
                .into_iter()
                .filter(|s| s.may_move_to(to))
                .collect()
        };
        assert_eq!(into(Allocating), [ReadyForAllocation, WaitingForProvider]);
        assert_eq!(into(WaitingForProvider), [ReadyForAllocation, Allocating]);
        // An acceptance may be handled before the offer or the wait it ends.
        assert_eq!(
            into(Allocated),
            [ReadyForAllocation, Allocating, WaitingForProvider]
        );
        assert_eq!(into(AssessmentOpen), [Allocated]);
        assert_eq!(into(Assessed), [Allocated, AssessmentOpen]);
        for s in [
            Allocating,
            WaitingForProvider,
            Allocated,
            AssessmentOpen,
            Assessed,
            PlanAgreed,
            InReview,
        ] {
            assert!(s.is_open() && s.may_move_to(ClosedWithdrawn), "{s}");
            assert!(!s.may_move_to(ReadyForAllocation), "{s}");
        }
    }

    #[test]
    fn a_case_closes_with_outcomes_only_once_it_has_someone_helping() {
        use State::*;
        let into = |to: State| -> Vec<State> {
            State::ALL
                .into_iter()
                .filter(|s| s.may_move_to(to))
                .collect()
        };
        let helping = [Allocated, AssessmentOpen, Assessed, PlanAgreed, InReview];
        for to in [ClosedOutcomesMet, ClosedOutcomesNotMet, ClosedSteppedDown] {
            assert_eq!(into(to), helping, "{to}");
            assert!(to.is_closed() && !to.is_open(), "{to}");
        }
        assert_eq!(into(PlanAgreed), [Allocated, AssessmentOpen, Assessed]);
        assert_eq!(
            into(InReview),
            [Allocated, AssessmentOpen, Assessed, PlanAgreed]
        );
        assert_eq!(State::closure_of("outcomes_met"), Some(ClosedOutcomesMet));
        assert_eq!(State::closure_of("stepped_down"), Some(ClosedSteppedDown));
        assert_eq!(State::closure_of("closed"), None);
    }

    #[test]
    fn openings() {
        let o = |h, d, c| {
            Opening {
                significant_harm_risk: h,
                step_down: d,
                consent_held: c,
            }
            .first_state()
        };
        // Significant harm wins over everything, consent or not.
        for d in [false, true] {
            for c in [false, true] {
                assert_eq!(o(true, d, c), State::SteppedUp);
            }
        }
        assert_eq!(o(false, false, false), State::AwaitingConsent);
        assert_eq!(o(false, true, false), State::AwaitingConsent);
        assert_eq!(o(false, false, true), State::Screening);
        assert_eq!(o(false, true, true), State::ReadyForAllocation);
        for s in [
            o(false, false, false),
            o(false, false, true),
            o(false, true, true),
        ] {
            assert!(State::Requested.may_move_to(s));
        }
    }

    #[test]
    fn screening_outcomes() {
        assert_eq!(
            on_screening("accepted_for_early_help"),
            Ok(Some(State::ReadyForAllocation))
        );
        assert_eq!(
            on_screening("advice_and_signpost"),
            Ok(Some(State::ClosedAdviceGiven))
        );
        assert_eq!(on_screening("more_information_needed"), Ok(None));
        assert!(on_screening("maybe").is_err());
        for to in [
            State::ReadyForAllocation,
            State::ClosedAdviceGiven,
            State::SteppedUp,
        ] {
            assert!(State::Screening.may_move_to(to));
        }
    }

    #[test]
    fn timers_run_in_open_states() {
        for k in TimerKind::ALL {
            assert!(k.states().iter().all(|s| s.is_open()), "{k:?}");
        }
    }
}
