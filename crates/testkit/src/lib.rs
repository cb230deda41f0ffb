//! Finds or starts PostgreSQL and NATS for tests, SMTP sink, fixtures
