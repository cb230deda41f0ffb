//! Working days per council (work in progress).
