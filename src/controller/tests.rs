//! Reconciler tests against the mocked API server and fake AWS clients.
