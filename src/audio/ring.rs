//! (skeleton; the audio helper fills this)
