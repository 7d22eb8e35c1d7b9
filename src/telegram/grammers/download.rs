//! Reading a document (or a photo, at its largest size) back: where a message's media is ([`FileLocation`], taken from the
//! message and kept in a bounded window that every `getMessages` fills), `upload.getFile` in
//! the file's data centre (following `FILE_MIGRATE`, and copying the authorization there
//! with `conn.rs`'s [`GrammersApi::copy_auth`] when that data centre does not know the
//! account), and one fresh lookup when the file reference has expired.
//!
//! Download offsets and lengths are checked by the API's [`check_download`] before any
//! request; reading the messages themselves is `messages.rs`'s.

use std::collections::HashMap;
use std::sync::MutexGuard;

use grammers_client::sender::{InvocationError, RpcError};
use grammers_client::session::Session as _;
use grammers_client::tl;

use super::chats::Target;
use super::conn::{Conn, within_time};
use super::errors::map_invocation;
use super::messages::{belongs, document_of, largest_photo_size, message_id, photo_of};
use super::{GrammersApi, lock};
use crate::telegram::api::{TgError, check_download};

/// Where a message's document can be downloaded from.
#[derive(Clone)]
pub(super) struct FileLocation {
    location: tl::enums::InputFileLocation,
    dc_id: i32,
}

/// [`TelegramApi::download`](crate::telegram::api::TelegramApi::download).
pub(super) async fn download(
    api: &GrammersApi,
    id: i32,
    offset: u64,
    limit: u32,
) -> Result<Vec<u8>, TgError> {
    check_download(offset, limit)?;
    let (conn, target, _) = api.ready()?;
    let mut refreshed = false;
    loop {
        let file = api.file_location(&conn, &target, id).await?;
        // Home data centre files spread over the pool; another data centre's (and a file
        // that moved: FILE_MIGRATE) go through the main connection, which copies the
        // authorization there.
        let home = api.session.home_dc_id().ok();
        let answer = match home {
            Some(home) if file.dc_id <= 0 || file.dc_id == home => {
                match api
                    .invoke_file(&get_file_request(&file, offset, limit))
                    .await?
                {
                    Err(InvocationError::Rpc(e)) if e.code == 303 => {
                        api.get_file(&conn, &file, offset, limit).await
                    }
                    answer => answer.and_then(file_bytes),
                }
            }
            _ => api.get_file(&conn, &file, offset, limit).await,
        };
        match answer {
            Ok(bytes) => return Ok(bytes),
            Err(e) if !refreshed && e.is("FILE_REFERENCE_*") => {
                // File references expire: fetch the message again, once.
                api.forget_locations(&[id]);
                refreshed = true;
            }
            Err(e) => return Err(map_invocation(&e)),
        }
    }
}

impl GrammersApi {
    /// Where the document of message `id` is, from the cache or a fresh fetch.
    async fn file_location(
        &self,
        conn: &Conn,
        target: &Target,
        id: i32,
    ) -> Result<FileLocation, TgError> {
        if let Some(found) = self.files().get(&id) {
            return Ok(found.clone());
        }
        let messages = self.get_raw_messages(conn, target, &[id]).await?;
        self.remember_locations(&messages, target);
        self.files()
            .get(&id)
            .cloned()
            .ok_or_else(|| TgError::Invalid("MESSAGE_ID_INVALID".into()))
    }

    /// Keeps where the documents of fetched messages are, so downloading one later needs
    /// no second fetch (a restore looks each part's message up before reading it).
    pub(super) fn remember_locations(&self, messages: &[tl::enums::Message], target: &Target) {
        let mut files = self.files();
        // Locations of parts already read are not needed again: keep a window, not all.
        if files.len() >= 1_000 {
            files.clear();
        }
        for m in messages.iter().filter(|m| belongs(m, target)) {
            if let (Some(id), Some(found)) = (message_id(m), document_location(m)) {
                files.insert(id, found);
            }
        }
    }

    /// Drops what is known of where the documents of messages `ids` are (deleted, or a
    /// file reference that expired).
    pub(super) fn forget_locations(&self, ids: &[i32]) {
        let mut files = self.files();
        for id in ids {
            files.remove(id);
        }
    }

    fn files(&self) -> MutexGuard<'_, HashMap<i32, FileLocation>> {
        lock(&self.files)
    }

    /// `upload.getFile` in the file's data centre, following `FILE_MIGRATE` and importing the
    /// authorization there once.
    async fn get_file(
        &self,
        conn: &Conn,
        file: &FileLocation,
        offset: u64,
        limit: u32,
    ) -> Result<Vec<u8>, InvocationError> {
        let home = self.session.home_dc_id().unwrap_or(file.dc_id);
        let mut dc = if file.dc_id > 0 { file.dc_id } else { home };
        let request = get_file_request(file, offset, limit);
        let mut attempts = 0;
        let mut copied_here = false;
        loop {
            attempts += 1;
            let answer = within_time(conn.client.invoke_in_dc(dc, &self.outgoing(&request)))
                .await
                .map_err(timed_out)?;
            match answer {
                Ok(answer) => return file_bytes(answer),
                Err(InvocationError::Rpc(e))
                    if attempts < 4 && e.code == 303 && e.value.is_some_and(|v| v > 0) =>
                {
                    dc = e.value.unwrap_or_default() as i32;
                }
                Err(InvocationError::Rpc(e))
                    if attempts < 4 && dc != home && e.name == "AUTH_KEY_UNREGISTERED" =>
                {
                    within_time(self.copy_auth(conn, dc, copied_here))
                        .await
                        .map_err(timed_out)??;
                    copied_here = true;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// `upload.getFile` for `limit` bytes of `file` at `offset` (checked by the caller).
fn get_file_request(
    file: &FileLocation,
    offset: u64,
    limit: u32,
) -> tl::functions::upload::GetFile {
    tl::functions::upload::GetFile {
        precise: false,
        cdn_supported: false,
        location: file.location.clone(),
        offset: offset as i64,
        limit: limit as i32,
    }
}

/// The bytes of `upload.getFile`'s answer (CDN redirects are not asked for: an error).
fn file_bytes(answer: tl::enums::upload::File) -> Result<Vec<u8>, InvocationError> {
    match answer {
        tl::enums::upload::File::File(f) => Ok(f.bytes),
        tl::enums::upload::File::CdnRedirect(_) => Err(InvocationError::Rpc(RpcError {
            code: 400,
            name: "CDN_REDIRECT_UNSUPPORTED".into(),
            value: None,
            caused_by: None,
        })),
    }
}

/// A download step that had no answer in time, as the connection error it amounts to.
fn timed_out(_: TgError) -> InvocationError {
    InvocationError::Dropped("no answer from Telegram in time")
}

/// Where the document of a message is, or its photo at the largest size (`None` for a
/// message without either).
fn document_location(message: &tl::enums::Message) -> Option<FileLocation> {
    let tl::enums::Message::Message(m) = message else {
        return None;
    };
    let media = m.media.as_ref()?;
    if let Some(photo) = photo_of(media) {
        let (thumb_size, _) = largest_photo_size(photo)?;
        return Some(FileLocation {
            location: tl::types::InputPhotoFileLocation {
                id: photo.id,
                access_hash: photo.access_hash,
                file_reference: photo.file_reference.clone(),
                thumb_size,
            }
            .into(),
            dc_id: photo.dc_id,
        });
    }
    let doc = document_of(media)?;
    Some(FileLocation {
        location: tl::types::InputDocumentFileLocation {
            id: doc.id,
            access_hash: doc.access_hash,
            file_reference: doc.file_reference.clone(),
            thumb_size: String::new(),
        }
        .into(),
        dc_id: doc.dc_id,
    })
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{channel_peer, document, message};
    use super::*;

    #[test]
    fn documents_are_located_by_their_message() {
        let m = message(
            12,
            channel_peer(99),
            "caption",
            Some(document(Some("part-0001.bin"), 3 << 20)),
        );
        let location = document_location(&m).unwrap();
        assert_eq!(location.dc_id, 4);
        match location.location {
            tl::enums::InputFileLocation::InputDocumentFileLocation(l) => {
                assert_eq!(
                    (l.id, l.access_hash, l.file_reference),
                    (77, 88, vec![1, 2, 3])
                );
            }
            _ => panic!("not a document location"),
        }
        let text = message(14, channel_peer(99), "index", None);
        assert!(document_location(&text).is_none());
    }
}
