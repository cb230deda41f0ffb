//! The council's localities, and which one a family's postcode is in. A locality is a name and the
//! postcode areas (`WR`), districts (`WR1`) or sectors (`WR1 2`) it covers — the same
//! `tenants.<id>.allocation.localities` allocation matches providers by. The most specific entry
//! wins (a sector over a district over an area), so a council may carve a sector out of a district.
//! Only the locality's name is kept; the postcode is not.
use std::collections::BTreeMap;

/// No postcode, or not one.
pub const UNKNOWN: &str = "unknown";
/// A postcode in none of the council's localities.
pub const OUTSIDE: &str = "outside_localities";

/// A UK postcode as coverage reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Postcode {
    area: String,
    district: String,
    sector: String,
}

impl Postcode {
    /// Reads a postcode written any usual way ("wr1 2ab", "WR12AB"); `None` when it is not one.
    fn parse(s: &str) -> Option<Self> {
        let compact: String = s
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_uppercase();
        if !(5..=7).contains(&compact.len()) || !compact.is_ascii() {
            return None;
        }
        let (outward, inward) = compact.split_at(compact.len() - 3);
        let inward_ok = inward.as_bytes()[0].is_ascii_digit()
            && inward.as_bytes()[1..].iter().all(u8::is_ascii_alphabetic);
        let outward_ok = outward.as_bytes()[0].is_ascii_alphabetic()
            && outward.bytes().all(|b| b.is_ascii_alphanumeric())
            && outward.bytes().any(|b| b.is_ascii_digit());
        if !inward_ok || !outward_ok {
            return None;
        }
        Some(Self {
            area: outward
                .chars()
                .take_while(char::is_ascii_alphabetic)
                .collect(),
            district: outward.to_string(),
            sector: format!("{outward} {}", &inward[..1]),
        })
    }

    /// How specifically `entry` covers this postcode: 3 sector, 2 district, 1 area, 0 not at all.
    fn covered_by(&self, entry: &str) -> u8 {
        let e = entry
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_ascii_uppercase();
        if e == self.sector {
            3
        } else if e == self.district {
            2
        } else if e == self.area {
            1
        } else {
            0
        }
    }
}

/// A council's localities: name → the areas, districts and sectors it covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Localities(pub BTreeMap<String, Vec<String>>);

impl Localities {
    /// The locality `postcode` is in: its name, [`OUTSIDE`], or [`UNKNOWN`] for no postcode.
    pub fn of(&self, postcode: Option<&str>) -> String {
        let Some(pc) = postcode.and_then(Postcode::parse) else {
            return UNKNOWN.into();
        };
        let pc = &pc;
        self.0
            .iter()
            .flat_map(|(name, parts)| parts.iter().map(move |p| (pc.covered_by(p), name)))
            .filter(|(rank, _)| *rank > 0)
            // The most specific entry; between equals, the first name.
            .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(a.1)))
            .map_or_else(|| OUTSIDE.into(), |(_, name)| name.clone())
    }
}
