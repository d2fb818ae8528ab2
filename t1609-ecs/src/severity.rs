//! Alert severity and confidence, and the numbers Elastic gives them.

use serde::{Deserialize, Serialize};

/// How bad an alert is. Serialised lowercase (`"high"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

/// A severity name that is not `low`, `medium`, `high` or `critical`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownSeverity(pub String);

impl std::fmt::Display for UnknownSeverity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "severity {:?} is not one of low, medium, high, critical",
            self.0
        )
    }
}

impl std::error::Error for UnknownSeverity {}

impl Severity {
    pub const ALL: [Severity; 4] = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Elastic's numeric scale: `event.severity`, and the default `event.risk_score`.
    pub fn ecs_number(self) -> u8 {
        match self {
            Severity::Low => 21,
            Severity::Medium => 47,
            Severity::High => 73,
            Severity::Critical => 99,
        }
    }

    /// `levels` steps up, at most critical.
    #[must_use]
    pub fn raised(self, levels: u8) -> Severity {
        match (self as u8).saturating_add(levels) {
            0 => Severity::Low,
            1 => Severity::Medium,
            2 => Severity::High,
            _ => Severity::Critical,
        }
    }
}

impl std::str::FromStr for Severity {
    type Err = UnknownSeverity;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Severity::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownSeverity(s.to_owned()))
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How sure a rule is that a hit is the technique and not a look-alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    Low,
    Medium,
    High,
}

impl Confidence {
    /// One step lower (low stays low): a weaker way of knowing the same thing.
    #[must_use]
    pub fn lowered(self) -> Confidence {
        match self {
            Confidence::High => Confidence::Medium,
            Confidence::Medium | Confidence::Low => Confidence::Low,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::Low => "low",
            Confidence::Medium => "medium",
            Confidence::High => "high",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Severity::{self, Critical, High, Low, Medium};

    #[test]
    fn severity_raises_and_stops_at_critical() {
        assert_eq!(Low.raised(0), Low);
        assert_eq!(Low.raised(2), High);
        assert_eq!(Medium.raised(1), High);
        assert_eq!(High.raised(5), Critical);
        assert_eq!(Critical.raised(u8::MAX), Critical);
    }

    #[test]
    fn confidence_lowers_one_step_and_stops_at_low() {
        use super::Confidence;
        assert_eq!(Confidence::High.lowered(), Confidence::Medium);
        assert_eq!(Confidence::Medium.lowered(), Confidence::Low);
        assert_eq!(Confidence::Low.lowered(), Confidence::Low);
    }

    #[test]
    fn names_and_numbers_round_trip() {
        for s in Severity::ALL {
            assert_eq!(s.as_str().parse::<Severity>(), Ok(s));
        }
        assert_eq!(
            [Low, Medium, High, Critical].map(Severity::ecs_number),
            [21, 47, 73, 99]
        );
        let err = "severe".parse::<Severity>().unwrap_err().to_string();
        assert!(
            err.contains("\"severe\"") && err.contains("critical"),
            "{err}"
        );
    }
}
