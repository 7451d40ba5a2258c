//! RequestIds. (ImportIds come from the state store's sequence.)

/// A fresh RequestId: an upper-case UUID, as the cloud API prints them.
pub fn request_id() -> String {
    uuid::Uuid::new_v4().to_string().to_uppercase()
}
