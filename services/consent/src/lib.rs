//! Consent (work in progress).
