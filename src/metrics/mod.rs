//! SED metrics (skeleton; the metrics helper fills this)
