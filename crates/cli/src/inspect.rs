//! `hiber inspect IMAGE [--json] [--verify]`: describe an image file.
//!
//! The description itself (`ImageSummary`, text and JSON) lives in
//! `hiber-image` so scripts and tests see exactly what this prints.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use hiber_image::{Image, ImageError, ImageSummary};
use serde::Serialize;

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
    match print(&summary, &args) {
        // `hiber inspect … | head` is not an error.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        r => r.context("writing to stdout").map(|()| ExitCode::SUCCESS),
    }
}

/// The JSON object: the summary plus whether the page data was checked.
#[derive(Serialize)]
struct JsonOut<'a> {
    #[serde(flatten)]
    summary: &'a ImageSummary,
    data_verified: bool,
}

fn print(summary: &ImageSummary, args: &InspectArgs) -> io::Result<()> {
    let mut out = io::stdout().lock();
    if args.json {
        let json = JsonOut {
            summary,
            data_verified: args.verify,
        };
        serde_json::to_writer_pretty(&mut out, &json)?;
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
    out.flush()
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
