//! [`LmsStore`] for PostgreSQL: LMS records, originality reports, and the import transaction.
