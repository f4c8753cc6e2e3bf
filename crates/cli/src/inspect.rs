//! `hiber inspect IMAGE [--json] [--verify]`: describe an image file.
//!
//! The description itself (`ImageSummary`, text and JSON) lives in
//! `hiber-image` so scripts and tests see exactly what this prints.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use hiber_image::{Image, ImageError, ImageSummary};

/// Exit status for an image that is unreadable, corrupt, truncated, foreign
/// or too new (1 is left for usage and other failures).
const EXIT_BAD_IMAGE: u8 = 2;

#[derive(clap::Args)]
pub struct InspectArgs {
    /// Image file (`ckpt_*.hiber`).
    image: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Also check every chunk's checksum (reads all page data).
    #[arg(long)]
    verify: bool,
}

pub fn run(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let image = match open(&args) {
        Ok(image) => image,
        Err(e) => {
            eprintln!("hiber: {e}");
            return Ok(ExitCode::from(EXIT_BAD_IMAGE));
        }
    };
    let summary = ImageSummary::from_image(&image);
    let mut out = std::io::stdout().lock();
    if args.json {
        let mut value = serde_json::to_value(&summary).context("encoding the summary")?;
        if let Some(obj) = value.as_object_mut() {
            obj.insert("data_verified".into(), args.verify.into());
        }
        serde_json::to_writer_pretty(&mut out, &value).context("writing JSON")?;
        writeln!(out)?;
    } else {
        write!(out, "{summary}")?;
        if args.verify {
            writeln!(
                out,
                "verified   all {} chunks match their checksums",
                summary.totals.chunks
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Opens (and, with `--verify`, checks the page data of) the image: any
/// failure here is the image's, reported with the reader's message.
fn open(args: &InspectArgs) -> Result<Image, ImageError> {
    let image = Image::open(&args.image)?;
    if args.verify {
        image.verify_data()?;
    }
    Ok(image)
}
