//! Container images built without a registry (work in progress).
