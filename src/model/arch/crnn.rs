//! CDur-style CRNN (skeleton; the model helper replaces this file).

use serde::{Deserialize, Serialize};

/// Parameters of the CRNN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrnnConfig {
    /// GRU hidden size per direction.
    pub gru_hidden: usize,
}
