//! `mmo-webhooks journal status`: what a journal file holds, read without opening it for writing.

use super::*;

/// What a journal file holds, read without opening it for writing: `mmo-webhooks journal status` next to
/// a stopped service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalStatus {
    pub backlog: Backlog,
    pub oldest_received_at: Option<chrono::DateTime<chrono::Utc>>,
    pub file_bytes: u64,
}

/// Reads a journal directory's status read-only. Fails if the directory holds no journal, or if a running
/// service holds it open.
pub fn status(dir: &Path) -> Result<JournalStatus, JournalError> {
    let path = Journal::file(dir);
    let file_bytes = std::fs::metadata(&path)
        .map_err(|source| JournalError::Directory {
            path: path.display().to_string(),
            source,
        })?
        .len();
    let db = Builder::new()
        .open_read_only(&path)
        .map_err(|error| JournalError::Open {
            path: path.display().to_string(),
            source: error.into(),
        })?;
    let read = db.begin_read().map_err(redb::Error::from)?;
    let table = match read.open_table(ENTRIES) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => {
            return Ok(JournalStatus {
                backlog: Backlog::default(),
                oldest_received_at: None,
                file_bytes,
            })
        }
        Err(error) => return Err(redb::Error::from(error).into()),
    };
    let mut backlog = Backlog::default();
    let mut oldest_received_at = None;
    for row in table.iter().map_err(redb::Error::from)? {
        let (_, value) = row.map_err(redb::Error::from)?;
        if backlog.entries == 0 {
            oldest_received_at = Entry::decode(value.value())
                .ok()
                .map(|entry| entry.received_at());
        }
        backlog.entries += 1;
        backlog.bytes += value.value().len() as u64;
    }
    Ok(JournalStatus {
        backlog,
        oldest_received_at,
        file_bytes,
    })
}
