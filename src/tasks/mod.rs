//! What each experiment family brings to the generic runner of [`crate::train`]: its data and
//! batches, its model head and loss, its evaluation and metrics.

pub mod e2e;
pub mod glue;
pub mod squad;

use std::fmt;

use crate::data::glue::GlueTask;
use crate::error::{Error, Result};
use crate::tasks::squad::data::SquadVersion;

/// The task a configuration's `task` key names: a GLUE task (`rte`, `sst2`, …) or a SQuAD
/// version (`squad-v1.1`, `squad-v2.0`) or `e2e`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    /// GLUE, paper Table 1.
    Glue(GlueTask),
    /// SQuAD, paper Table 2.
    Squad(SquadVersion),
    /// E2E NLG, paper Table 3.
    E2e,
}

impl TaskKind {
    /// Parses a `task` value; the error lists what is valid.
    pub fn parse(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "squad-v1.1" | "squad1.1" | "squad-1.1" => Ok(Self::Squad(SquadVersion::V1)),
            "squad-v2.0" | "squad2.0" | "squad-2.0" => Ok(Self::Squad(SquadVersion::V2)),
            "e2e" => Ok(Self::E2e),
            other => other.parse().map(Self::Glue).map_err(|e: Error| {
                Error::config("task", format!("{e}; or squad-v1.1, squad-v2.0, e2e"))
            }),
        }
    }
}

impl fmt::Display for TaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Glue(task) => write!(f, "{task}"),
            Self::Squad(SquadVersion::V1) => f.write_str("squad-v1.1"),
            Self::Squad(SquadVersion::V2) => f.write_str("squad-v2.0"),
            Self::E2e => f.write_str("e2e"),
        }
    }
}
