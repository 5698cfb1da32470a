//! Get picture: a picture by its key, public (the key names its content).

use proto::{ErrorCode, GetPicture, ImageFormat, Picture};

use super::{Context, OpError};

const FETCH: &str = "SELECT format, data FROM pictures WHERE id = $1";

pub(super) fn run(ctx: &Context, request: GetPicture) -> Result<Picture, OpError> {
    let key = request.key.as_str();
    let not_found = || OpError::new(ErrorCode::NotFound, "no such picture");
    if !proto::is_picture_key(key) {
        return Err(not_found());
    }
    let row = ctx.db.read(|conn| {
        let statement = conn.prepared(FETCH)?;
        conn.client().query_opt(&statement, &[&key])
    })?;
    let row = row.ok_or_else(not_found)?;
    let tag: i16 = row.get(0);
    let format = ImageFormat::ALL
        .into_iter()
        .find(|format| i16::from(*format as u8) == tag)
        .ok_or_else(|| {
            log::error!("picture {key} has an unknown format tag {tag}");
            OpError::new(ErrorCode::Internal, "internal error")
        })?;
    Ok(Picture {
        format,
        data: row.get(1),
    })
}
