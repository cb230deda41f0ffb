//! Ranking the directory's services for one family, as a pure function of the family, the
//! council's rules and each service's terms and load. Every service considered comes back, ranked
//! or excluded, with the reasons; the rule version says which rules made the decision.
//!
//! The rules, in order:
//! 1. **Which kind of service.** A programme the family meets that the council's rules tie to a
//!    kind (BRFC → a commissioned provider at Tier 2) decides it, and then only services
//!    commissioned for that programme qualify; otherwise the council's default (its locality's
//!    Early Help Team).
//! 2. **Exclusions**, each one named: not active or withdrawn from the directory; no terms set by
//!    the council; the wrong kind; not commissioned for the programme; the family's postcode
//!    outside its coverage (or unknown); none of the family's needs covered; no child within its
//!    ages; no free capacity; its contract volume for the period used; it declined this case.
//! 3. **Ranking** of the rest: more of the family's needs covered, then more of the children within
//!    its ages, then more free capacity (as a share of its capacity), then more contract volume
//!    left, then by name and id so equal services always come out in the same order.
use super::{Kind, Postcode, Terms};
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// What the matcher knows about the family.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Family {
    /// As given; read with [`Postcode::parse`].
    pub postcode: String,
    pub needs: Vec<String>,
    pub programmes: Vec<String>,
    pub children_ages: Vec<u32>,
}

/// The council's matching rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub rule_version: String,
    /// The kind of service when no programme rule applies.
    pub default_kind: Kind,
    /// Programme → the kind of service it is delivered by.
    pub programmes: Vec<(String, Kind)>,
    /// Locality name → the postcode areas, districts or sectors it is made of.
    pub localities: BTreeMap<String, Vec<String>>,
}

/// One service as the matcher sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    pub name: String,
    /// Active in the directory and not withdrawn from it.
    pub active: bool,
    /// Why not, when not (e.g. "status inactive", "withdrawn from the directory").
    pub inactive_reason: String,
    pub minimum_age: Option<u32>,
    pub maximum_age: Option<u32>,
    /// Needs its taxonomy terms map to (used when the council's terms name none).
    pub taxonomy_needs: Vec<String>,
    pub terms: Option<Terms>,
    pub open_cases: u32,
    pub period_cases: u32,
    /// It declined this case already.
    pub declined: bool,
}

/// A service's place in the decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub id: String,
    /// 1-based; 0 when excluded.
    pub rank: u32,
    pub reasons: Vec<String>,
}

impl Placed {
    pub fn excluded(&self) -> bool {
        self.rank == 0
    }
}

/// The matcher's decision: ranked services first (rank 1 is the one to offer), then the excluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub rule_version: String,
    pub wanted_kind: Kind,
    pub wanted_kind_reason: String,
    /// The programme that decided the kind, when one did.
    pub programme: Option<String>,
    pub placed: Vec<Placed>,
}

impl Decision {
    /// The service to offer first, if any qualifies.
    pub fn first(&self) -> Option<&Placed> {
        self.placed.first().filter(|p| !p.excluded())
    }
}

/// Ranks `candidates` for `family` under `rules`.
pub fn decide(family: &Family, rules: &Rules, candidates: &[Candidate]) -> Decision {
    let (wanted_kind, programme, wanted_kind_reason) = wanted(family, rules);
    let postcode = Postcode::parse(&family.postcode);
    let mut ranked: Vec<(Key, Placed)> = Vec::new();
    let mut excluded: Vec<Placed> = Vec::new();
    for c in candidates {
        let mut out: Vec<String> = Vec::new();
        let mut why: Vec<String> = Vec::new();
        if !c.active {
            out.push(format!("not taking cases: {}", c.inactive_reason));
        }
        let Some(t) = &c.terms else {
            out.push(
                "the council has not set its terms (kind, coverage, capacity): not offered cases"
                    .into(),
            );
            excluded.push(Placed {
                id: c.id.clone(),
                rank: 0,
                reasons: out,
            });
            continue;
        };
        if t.kind != wanted_kind {
            out.push(format!("{wanted_kind} wanted, this is {}", t.kind));
        }
        if let Some(p) = &programme
            && !t.programmes.contains(p)
        {
            out.push(format!("not commissioned for programme {p}"));
        }
        match &postcode {
            None => out.push(
                "the family's postcode is missing or not a UK postcode: coverage cannot be checked"
                    .into(),
            ),
            Some(pc) => match covered_by(pc, &t.coverage, &rules.localities) {
                Some(entry) => why.push(format!("covers {} ({entry})", pc.district)),
                None => out.push(format!("does not cover {}", pc.district)),
            },
        }
        let offered: &[String] = if !t.needs.is_empty() {
            &t.needs
        } else {
            &c.taxonomy_needs
        };
        let met: Vec<&String> = if offered.is_empty() {
            family.needs.iter().collect()
        } else {
            family
                .needs
                .iter()
                .filter(|n| offered.contains(n))
                .collect()
        };
        if !family.needs.is_empty() && met.is_empty() {
            out.push(format!(
                "covers none of the family's needs ({})",
                family.needs.join(", ")
            ));
        } else if offered.is_empty() {
            why.push("covers every need".into());
        } else {
            why.push(format!(
                "covers {} of {} needs ({})",
                met.len(),
                family.needs.len(),
                met.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let in_range = family
            .children_ages
            .iter()
            .filter(|a| {
                c.minimum_age.is_none_or(|lo| **a >= lo) && c.maximum_age.is_none_or(|hi| **a <= hi)
            })
            .count();
        let ages = match (c.minimum_age, c.maximum_age) {
            (None, None) => "any age".to_string(),
            (Some(lo), None) => format!("{lo} and over"),
            (None, Some(hi)) => format!("up to {hi}"),
            (Some(lo), Some(hi)) => format!("{lo}-{hi}"),
        };
        if !family.children_ages.is_empty() && in_range == 0 {
            out.push(format!("no child within its ages ({ages})"));
        } else if !family.children_ages.is_empty() {
            why.push(format!(
                "{in_range} of {} children within its ages ({ages})",
                family.children_ages.len()
            ));
        }
        if c.open_cases >= t.capacity {
            out.push(format!(
                "no free capacity ({} of {} open cases)",
                c.open_cases, t.capacity
            ));
        } else {
            why.push(format!(
                "free capacity {} of {}",
                t.capacity - c.open_cases,
                t.capacity
            ));
        }
        let left = t.contract_volume.map(|v| v.saturating_sub(c.period_cases));
        if let Some(v) = t.contract_volume {
            if c.period_cases >= v {
                out.push(format!(
                    "contract volume for this {} used ({} of {})",
                    t.contract_period.as_str(),
                    c.period_cases,
                    v
                ));
            } else {
                why.push(format!(
                    "contract: {} of {v} cases left this {}",
                    v - c.period_cases,
                    t.contract_period.as_str()
                ));
            }
        }
        if c.declined {
            out.push("declined this case before".into());
        }
        if out.is_empty() {
            let key = Key {
                needs_met: met.len(),
                children: in_range,
                free_num: u64::from(t.capacity - c.open_cases),
                free_den: u64::from(t.capacity),
                left: left.unwrap_or(u32::MAX),
                name: c.name.clone(),
                id: c.id.clone(),
            };
            ranked.push((
                key,
                Placed {
                    id: c.id.clone(),
                    rank: 0,
                    reasons: why,
                },
            ));
        } else {
            excluded.push(Placed {
                id: c.id.clone(),
                rank: 0,
                reasons: out,
            });
        }
    }
    ranked.sort_by(|a, b| a.0.cmp(&b.0));
    let mut placed: Vec<Placed> = ranked
        .into_iter()
        .enumerate()
        .map(|(i, (_, mut p))| {
            p.rank = u32::try_from(i + 1).unwrap_or(u32::MAX);
            p
        })
        .collect();
    excluded.sort_by(|a, b| a.id.cmp(&b.id));
    placed.extend(excluded);
    Decision {
        rule_version: rules.rule_version.clone(),
        wanted_kind,
        wanted_kind_reason,
        programme,
        placed,
    }
}

/// The kind of service wanted, the programme that decided it, and why.
fn wanted(family: &Family, rules: &Rules) -> (Kind, Option<String>, String) {
    for (programme, kind) in &rules.programmes {
        if family.programmes.contains(programme) {
            return (
                *kind,
                Some(programme.clone()),
                format!("the family meets programme {programme}, delivered by a {kind} service"),
            );
        }
    }
    (
        rules.default_kind,
        None,
        format!(
            "no programme rule applies: the council's default, a {} service",
            rules.default_kind
        ),
    )
}

/// The coverage entry (or locality) that includes `pc`, if one does.
fn covered_by(
    pc: &Postcode,
    coverage: &[String],
    localities: &BTreeMap<String, Vec<String>>,
) -> Option<String> {
    coverage.iter().find_map(|entry| {
        if pc.within(entry) {
            return Some(entry.trim().to_ascii_uppercase());
        }
        localities
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(entry.trim()))
            .and_then(|(name, parts)| {
                parts
                    .iter()
                    .find(|p| pc.within(p))
                    .map(|p| format!("locality {name}: {}", p.trim().to_ascii_uppercase()))
            })
    })
}

/// The ranking order: the better service sorts first.
#[derive(Debug, PartialEq, Eq)]
struct Key {
    needs_met: usize,
    children: usize,
    free_num: u64,
    free_den: u64,
    left: u32,
    name: String,
    id: String,
}

impl Ord for Key {
    fn cmp(&self, o: &Self) -> Ordering {
        o.needs_met
            .cmp(&self.needs_met)
            .then(o.children.cmp(&self.children))
            // free share, compared without division: a/b > c/d ⇔ a·d > c·b
            .then((o.free_num * self.free_den).cmp(&(self.free_num * o.free_den)))
            .then(o.left.cmp(&self.left))
            .then(self.name.cmp(&o.name))
            .then(self.id.cmp(&o.id))
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Period;

    fn rules() -> Rules {
        Rules {
            rule_version: "test-1".into(),
            default_kind: Kind::EarlyHelpTeam,
            programmes: vec![("brfc".into(), Kind::Commissioned)],
            localities: BTreeMap::from([(
                "Worcester City".to_string(),
                vec!["WR1".to_string(), "WR2".to_string()],
            )]),
        }
    }

    fn terms(kind: Kind, coverage: &[&str], needs: &[&str], capacity: u32) -> Terms {
        Terms {
            kind,
            coverage: coverage.iter().map(|s| s.to_string()).collect(),
            needs: needs.iter().map(|s| s.to_string()).collect(),
            programmes: if kind == Kind::Commissioned {
                vec!["brfc".into()]
            } else {
                vec![]
            },
            capacity,
            contract_volume: (kind == Kind::Commissioned).then_some(30),
            contract_period: Period::Quarter,
            offer_email: String::new(),
            agency: String::new(),
        }
    }

    fn service(id: &str, t: Option<Terms>) -> Candidate {
        Candidate {
            id: id.into(),
            name: format!("Service {id}"),
            active: true,
            inactive_reason: String::new(),
            minimum_age: None,
            maximum_age: None,
            taxonomy_needs: vec![],
            terms: t,
            open_cases: 0,
            period_cases: 0,
            declined: false,
        }
    }

    fn family(postcode: &str, needs: &[&str], programmes: &[&str], ages: &[u32]) -> Family {
        Family {
            postcode: postcode.into(),
            needs: needs.iter().map(|s| s.to_string()).collect(),
            programmes: programmes.iter().map(|s| s.to_string()).collect(),
            children_ages: ages.to_vec(),
        }
    }

    fn order(d: &Decision) -> Vec<(&str, u32)> {
        d.placed.iter().map(|p| (p.id.as_str(), p.rank)).collect()
    }

    fn reasons<'a>(d: &'a Decision, id: &str) -> &'a [String] {
        &d.placed.iter().find(|p| p.id == id).unwrap().reasons
    }

    #[test]
    fn without_a_programme_the_localitys_early_help_team_is_chosen() {
        let d = decide(
            &family("WR1 2AB", &["housing"], &[], &[7]),
            &rules(),
            &[
                service(
                    "eht-south",
                    Some(terms(Kind::EarlyHelpTeam, &["WR10"], &[], 10)),
                ),
                service(
                    "eht-city",
                    Some(terms(Kind::EarlyHelpTeam, &["Worcester City"], &[], 10)),
                ),
                service("brfc-1", Some(terms(Kind::Commissioned, &["WR"], &[], 10))),
            ],
        );
        assert_eq!(d.wanted_kind, Kind::EarlyHelpTeam);
        assert_eq!(
            order(&d),
            [("eht-city", 1), ("brfc-1", 0), ("eht-south", 0)]
        );
        assert!(
            reasons(&d, "eht-city")
                .contains(&"covers WR1 (locality Worcester City: WR1)".to_string())
        );
        assert_eq!(reasons(&d, "eht-south"), ["does not cover WR1"]);
        assert!(reasons(&d, "brfc-1")[0].contains("early_help_team wanted"));
        assert_eq!(d.first().unwrap().id, "eht-city");
        assert_eq!(d.rule_version, "test-1");
    }

    #[test]
    fn a_programme_calls_for_a_provider_commissioned_for_it() {
        let mut other = terms(Kind::Commissioned, &["WR"], &[], 10);
        other.programmes = vec!["youth".into()];
        let d = decide(
            &family("WR1 2AB", &["housing"], &["brfc"], &[7]),
            &rules(),
            &[
                service("eht", Some(terms(Kind::EarlyHelpTeam, &["WR"], &[], 10))),
                service("brfc-1", Some(terms(Kind::Commissioned, &["WR"], &[], 10))),
                service("youth", Some(other)),
            ],
        );
        assert_eq!(
            (d.wanted_kind, d.programme.as_deref()),
            (Kind::Commissioned, Some("brfc"))
        );
        assert_eq!(order(&d), [("brfc-1", 1), ("eht", 0), ("youth", 0)]);
        assert_eq!(
            reasons(&d, "youth"),
            ["not commissioned for programme brfc"]
        );
    }

    #[test]
    fn needs_ages_capacity_and_contract_rank_then_exclude() {
        let mut a = service(
            "a",
            Some(terms(Kind::EarlyHelpTeam, &["WR"], &["housing"], 10)),
        );
        a.open_cases = 2;
        let mut b = service(
            "b",
            Some(terms(
                Kind::EarlyHelpTeam,
                &["WR"],
                &["housing", "crime"],
                10,
            )),
        );
        b.open_cases = 9;
        let mut c = service(
            "c",
            Some(terms(
                Kind::EarlyHelpTeam,
                &["WR"],
                &["housing", "crime"],
                4,
            )),
        );
        c.open_cases = 1;
        let mut full = service("full", Some(terms(Kind::EarlyHelpTeam, &["WR"], &[], 3)));
        full.open_cases = 3;
        let mut teens = service("teens", Some(terms(Kind::EarlyHelpTeam, &["WR"], &[], 10)));
        (teens.minimum_age, teens.maximum_age) = (Some(13), Some(19));
        let none = service(
            "none",
            Some(terms(Kind::EarlyHelpTeam, &["WR"], &["education"], 10)),
        );
        let d = decide(
            &family("WR1 2AB", &["housing", "crime"], &[], &[4, 9]),
            &rules(),
            &[a, b, c, full, teens, none],
        );
        // b and c cover both needs; c has more free capacity as a share (3/4 > 1/10); then a.
        assert_eq!(
            order(&d),
            [
                ("c", 1),
                ("b", 2),
                ("a", 3),
                ("full", 0),
                ("none", 0),
                ("teens", 0)
            ]
        );
        assert_eq!(
            reasons(&d, "full"),
            ["no free capacity (3 of 3 open cases)"]
        );
        assert_eq!(reasons(&d, "teens"), ["no child within its ages (13-19)"]);
        assert_eq!(
            reasons(&d, "none"),
            ["covers none of the family's needs (housing, crime)"]
        );
        assert!(reasons(&d, "a").contains(&"covers 1 of 2 needs (housing)".to_string()));
    }

    #[test]
    fn contract_volume_used_excludes_and_what_is_left_ranks() {
        let mut used = service("used", Some(terms(Kind::Commissioned, &["WR"], &[], 10)));
        used.period_cases = 30;
        let mut some = service("some", Some(terms(Kind::Commissioned, &["WR"], &[], 10)));
        some.period_cases = 20;
        let lots = service("lots", Some(terms(Kind::Commissioned, &["WR"], &[], 10)));
        let d = decide(
            &family("WR1 2AB", &["housing"], &["brfc"], &[]),
            &rules(),
            &[used, some, lots],
        );
        assert_eq!(order(&d), [("lots", 1), ("some", 2), ("used", 0)]);
        assert_eq!(
            reasons(&d, "used"),
            ["contract volume for this quarter used (30 of 30)"]
        );
        assert!(
            reasons(&d, "some").contains(&"contract: 10 of 30 cases left this quarter".to_string())
        );
    }

    #[test]
    fn inactive_untermed_declined_and_unknown_postcodes_are_excluded_with_every_reason() {
        let mut closed = service("closed", Some(terms(Kind::EarlyHelpTeam, &["WR"], &[], 10)));
        closed.active = false;
        closed.inactive_reason = "withdrawn from the directory".into();
        closed.declined = true;
        let bare = service("bare", None);
        let d = decide(
            &family("WR1 2AB", &["housing"], &[], &[]),
            &rules(),
            &[closed, bare],
        );
        assert!(d.first().is_none());
        assert_eq!(
            reasons(&d, "closed"),
            [
                "not taking cases: withdrawn from the directory",
                "declined this case before"
            ]
        );
        assert!(reasons(&d, "bare")[0].contains("has not set its terms"));
        let d = decide(
            &family("nowhere", &["housing"], &[], &[]),
            &rules(),
            &[service(
                "eht",
                Some(terms(Kind::EarlyHelpTeam, &["WR"], &[], 10)),
            )],
        );
        assert!(reasons(&d, "eht")[0].contains("postcode is missing or not a UK postcode"));
    }

    #[test]
    fn taxonomy_needs_count_when_the_council_names_none() {
        let mut t = service("t", Some(terms(Kind::EarlyHelpTeam, &["WR"], &[], 10)));
        t.taxonomy_needs = vec!["education".into()];
        let d = decide(&family("WR1 2AB", &["housing"], &[], &[]), &rules(), &[t]);
        assert!(reasons(&d, "t")[0].contains("covers none"));
    }

    #[test]
    fn equal_services_come_out_in_the_same_order_whatever_the_input_order() {
        let mk = |id: &str| service(id, Some(terms(Kind::EarlyHelpTeam, &["WR"], &[], 10)));
        let f = family("WR1 2AB", &["housing"], &[], &[]);
        let one = decide(&f, &rules(), &[mk("x"), mk("y"), mk("z")]);
        let two = decide(&f, &rules(), &[mk("z"), mk("x"), mk("y")]);
        assert_eq!(order(&one), order(&two));
        assert_eq!(order(&one), [("x", 1), ("y", 2), ("z", 3)]);
    }
}
