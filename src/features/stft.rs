//! (skeleton; the features helper fills this)
