//! `ClientToken`s of the API: the same token from the same owner always
//! names the same import, across restarts.

use rusqlite::{params, OptionalExtension};

use super::{now, Store, StoreError};

impl Store {
    /// The import an owner's `ClientToken` already started, if any.
    pub fn client_token(&self, owner: &str, token: &str) -> Result<Option<u64>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT import_id FROM client_tokens WHERE owner = ?1 AND token = ?2",
                params![owner, token],
                |r| r.get::<_, i64>(0).map(|i| i as u64),
            )
            .optional()
        })
    }

    /// Remembers that an owner's `ClientToken` started `import_id`. The
    /// first import recorded for a token wins; returns the one that holds it.
    pub fn remember_client_token(&self, owner: &str, token: &str, import_id: u64) -> Result<u64, StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT OR IGNORE INTO client_tokens (owner, token, import_id, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![owner, token, import_id as i64, now()],
            )?;
            c.query_row(
                "SELECT import_id FROM client_tokens WHERE owner = ?1 AND token = ?2",
                params![owner, token],
                |r| r.get::<_, i64>(0).map(|i| i as u64),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_per_owner_and_survive_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            assert_eq!(store.client_token("o", "t").expect("read"), None);
            assert_eq!(store.remember_client_token("o", "t", 7).expect("write"), 7);
            assert_eq!(store.remember_client_token("o", "t", 8).expect("write"), 7);
            assert_eq!(store.client_token("p", "t").expect("read"), None);
        }
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(store.client_token("o", "t").expect("read"), Some(7));
    }
}
