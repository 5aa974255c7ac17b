//! The two kinds of shared file (layouts in `descriptor::file`):
//!
//! - the streams file `<run>/<nukleus>/streams/<source>`: a forward ring
//!   (source writes, nukleus reads) and a throttle ring (nukleus writes
//!   WINDOW and RESET back, source reads);
//! - the control file `<run>/<nukleus>/control`: a many-writer command ring,
//!   a response broadcast buffer and the counters.
//!
//! Files are created under a temporary name and renamed into place once the
//! header is written, so whoever opens the path sees a whole file or none.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::Arc;

use super::broadcast::{self, BroadcastReceiver, BroadcastTransmitter};
use super::counters::{CountersManager, CountersReader};
use super::descriptor::{check_capacity, counters, file, LayoutError};
use super::region::Region;
use super::ring::{Ring, Writers};

/// A streams file: one pair of rings between a source and a nukleus.
#[derive(Debug)]
pub struct StreamsFile {
    /// Frames from the source to the nukleus.
    pub forward: Ring,
    /// WINDOW and RESET from the nukleus back to the source.
    pub throttle: Ring,
}

impl StreamsFile {
    /// File length for rings of `capacity`.
    pub const fn file_length(capacity: usize) -> usize {
        file::HEADER + 2 * Ring::required_length(capacity)
    }

    /// Creates the file (and its parent directories), replacing any old one.
    /// Both rings get `capacity` bytes (a power of two).
    pub fn create(path: &Path, capacity: usize) -> io::Result<StreamsFile> {
        check_capacity(capacity).map_err(|e| invalid(io::ErrorKind::InvalidInput, path, e))?;
        let region = create_region(path, Self::file_length(capacity), |region| {
            write_header(region, file::STREAMS_MAGIC);
            let capacity = capacity as i64;
            region.store_i64(file::FORWARD_CAPACITY, capacity, Relaxed);
            region.store_i64(file::THROTTLE_CAPACITY, capacity, Relaxed);
        })?;
        Self::layout(path, region, capacity, capacity)
    }

    /// A streams file of no file: rings in private memory that nobody else
    /// writes or reads. Stands in the place of a streams file that was
    /// removed (UNCAPTURE, UNROUTE) so that the places of the others stay
    /// where live streams expect them; what is written to it goes nowhere.
    pub fn detached() -> io::Result<StreamsFile> {
        let capacity = super::descriptor::MIN_CAPACITY;
        let path = Path::new("(detached)");
        let region = Region::anonymous(Self::file_length(capacity))?;
        write_header(&region, file::STREAMS_MAGIC);
        region.store_i64(file::FORWARD_CAPACITY, capacity as i64, Relaxed);
        region.store_i64(file::THROTTLE_CAPACITY, capacity as i64, Relaxed);
        Self::layout(path, Arc::new(region), capacity, capacity)
    }

    /// Maps an existing streams file, validating its header and length.
    pub fn open(path: &Path) -> io::Result<StreamsFile> {
        let region = Arc::new(Region::open(path)?);
        check_header(path, &region, file::STREAMS_MAGIC)?;
        let forward = read_length(path, &region, file::FORWARD_CAPACITY)?;
        let throttle = read_length(path, &region, file::THROTTLE_CAPACITY)?;
        let expected =
            file::HEADER + Ring::required_length(forward) + Ring::required_length(throttle);
        check_length(path, &region, expected)?;
        Self::layout(path, region, forward, throttle)
    }

    fn layout(
        path: &Path,
        region: Arc<Region>,
        forward: usize,
        throttle: usize,
    ) -> io::Result<Self> {
        let bad = |e| invalid(io::ErrorKind::InvalidData, path, e);
        let throttle_at = file::HEADER + Ring::required_length(forward);
        Ok(StreamsFile {
            forward: Ring::new(Arc::clone(&region), file::HEADER, forward, Writers::One)
                .map_err(bad)?,
            throttle: Ring::new(region, throttle_at, throttle, Writers::One).map_err(bad)?,
        })
    }
}

/// Sizes of the parts of a control file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlLayout {
    /// Command ring capacity (a power of two).
    pub commands: usize,
    /// Response broadcast buffer capacity (a power of two).
    pub responses: usize,
    /// Counters metadata length (a multiple of 128; the values area is the
    /// same length, so this holds `counters / 128` counters).
    pub counters: usize,
}

impl Default for ControlLayout {
    /// 1 MiB of commands, 1 MiB of responses, 512 counters (64 KiB).
    fn default() -> Self {
        ControlLayout {
            commands: 1 << 20,
            responses: 1 << 20,
            counters: 64 << 10,
        }
    }
}

impl ControlLayout {
    /// How many counters fit.
    pub const fn counters_capacity(&self) -> usize {
        self.counters / counters::METADATA_LENGTH
    }

    /// The file length of this layout.
    pub const fn file_length(&self) -> usize {
        self.counters_values() + self.counters
    }

    const fn responses_offset(&self) -> usize {
        file::HEADER + Ring::required_length(self.commands)
    }

    const fn counters_metadata(&self) -> usize {
        self.responses_offset() + broadcast::required_length(self.responses)
    }

    const fn counters_values(&self) -> usize {
        self.counters_metadata() + self.counters
    }

    fn validate(&self) -> Result<(), LayoutError> {
        check_capacity(self.commands)?;
        check_capacity(self.responses)?;
        if self.counters == 0 || !self.counters.is_multiple_of(counters::METADATA_LENGTH) {
            return Err(LayoutError::Bounds {
                offset: self.counters_metadata(),
                len: self.counters,
                region: self.file_length(),
            });
        }
        Ok(())
    }
}

/// The owner's side of a control file (the nukleus): reads commands,
/// transmits responses, allocates counters.
#[derive(Debug)]
pub struct ControlFile {
    /// Commands in (many writers; the nukleus reads).
    pub commands: Ring,
    /// Responses out.
    pub responses: BroadcastTransmitter,
    /// Counters the monitor reads.
    pub counters: CountersManager,
    /// The layout the file was created with.
    pub layout: ControlLayout,
}

/// A client's side of a control file (a tool, a test, another nukleus):
/// writes commands, receives responses, reads counters.
#[derive(Debug)]
pub struct ControlClient {
    /// Commands out (one of many writers).
    pub commands: Ring,
    /// Responses in, from the time of opening.
    pub responses: BroadcastReceiver,
    /// The nukleus's counters.
    pub counters: CountersReader,
    /// The layout read from the header.
    pub layout: ControlLayout,
}

impl ControlFile {
    /// Creates the control file (and parent directories), replacing any old one.
    pub fn create(path: &Path, layout: ControlLayout) -> io::Result<ControlFile> {
        layout
            .validate()
            .map_err(|e| invalid(io::ErrorKind::InvalidInput, path, e))?;
        let region = create_region(path, layout.file_length(), |region| {
            write_header(region, file::CONTROL_MAGIC);
            region.store_i64(file::COMMANDS_CAPACITY, layout.commands as i64, Relaxed);
            region.store_i64(file::RESPONSES_CAPACITY, layout.responses as i64, Relaxed);
            region.store_i64(file::COUNTERS_METADATA, layout.counters as i64, Relaxed);
            region.store_i64(file::COUNTERS_VALUES, layout.counters as i64, Relaxed);
        })?;
        let bad = |e| invalid(io::ErrorKind::InvalidData, path, e);
        Ok(ControlFile {
            commands: commands_ring(&region, &layout).map_err(bad)?,
            responses: BroadcastTransmitter::new(
                Arc::clone(&region),
                layout.responses_offset(),
                layout.responses,
            )
            .map_err(bad)?,
            counters: CountersManager::new(
                region,
                layout.counters_metadata(),
                layout.counters_values(),
                layout.counters_capacity(),
            )
            .map_err(bad)?,
            layout,
        })
    }

    /// Opens an existing control file as a client ([`ControlClient::open`]).
    pub fn open(path: &Path) -> io::Result<ControlClient> {
        ControlClient::open(path)
    }
}

impl ControlClient {
    /// Maps an existing control file, validating its header and length.
    pub fn open(path: &Path) -> io::Result<ControlClient> {
        let region = Arc::new(Region::open(path)?);
        check_header(path, &region, file::CONTROL_MAGIC)?;
        let layout = ControlLayout {
            commands: read_length(path, &region, file::COMMANDS_CAPACITY)?,
            responses: read_length(path, &region, file::RESPONSES_CAPACITY)?,
            counters: read_length(path, &region, file::COUNTERS_METADATA)?,
        };
        if read_length(path, &region, file::COUNTERS_VALUES)? != layout.counters {
            return Err(invalid(
                io::ErrorKind::InvalidData,
                path,
                "counters areas differ in length",
            ));
        }
        let bad = |e| invalid(io::ErrorKind::InvalidData, path, e);
        layout.validate().map_err(bad)?;
        check_length(path, &region, layout.file_length())?;
        Ok(ControlClient {
            commands: commands_ring(&region, &layout).map_err(bad)?,
            responses: BroadcastReceiver::new(
                Arc::clone(&region),
                layout.responses_offset(),
                layout.responses,
            )
            .map_err(bad)?,
            counters: CountersReader::new(
                region,
                layout.counters_metadata(),
                layout.counters_values(),
                layout.counters_capacity(),
            )
            .map_err(bad)?,
            layout,
        })
    }
}

fn commands_ring(region: &Arc<Region>, layout: &ControlLayout) -> Result<Ring, LayoutError> {
    Ring::new(
        Arc::clone(region),
        file::HEADER,
        layout.commands,
        Writers::Many,
    )
}

/// Creates `path` with `len` zero bytes via a temporary file in the same
/// directory, letting `init` write the header before the rename publishes it.
fn create_region(path: &Path, len: usize, init: impl FnOnce(&Region)) -> io::Result<Arc<Region>> {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .ok_or_else(|| invalid(io::ErrorKind::InvalidInput, path, "no file name"))?;
    let temp: PathBuf = dir.join(format!(
        ".{}.{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        SEQUENCE.fetch_add(1, Relaxed)
    ));
    let result = Region::create(&temp, len).and_then(|region| {
        init(&region);
        std::fs::rename(&temp, path)?;
        Ok(Arc::new(region))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

fn write_header(region: &Region, magic: i32) {
    region.store_i32(file::MAGIC, magic, Relaxed);
    region.store_i32(file::VERSION, file::CURRENT_VERSION, Release);
}

fn check_header(path: &Path, region: &Region, magic: i32) -> io::Result<()> {
    if region.len() < file::HEADER {
        return Err(invalid(
            io::ErrorKind::InvalidData,
            path,
            "shorter than its header",
        ));
    }
    let version = region.load_i32(file::VERSION, Acquire);
    let found = region.load_i32(file::MAGIC, Relaxed);
    if found != magic {
        let found = String::from_utf8_lossy(&found.to_le_bytes()).into_owned();
        let expected = String::from_utf8_lossy(&magic.to_le_bytes()).into_owned();
        let message = format!("magic {found:?} is not {expected:?}");
        return Err(invalid(io::ErrorKind::InvalidData, path, message));
    }
    if version != file::CURRENT_VERSION {
        let message = format!("version {version}, expected {}", file::CURRENT_VERSION);
        return Err(invalid(io::ErrorKind::InvalidData, path, message));
    }
    Ok(())
}

fn read_length(path: &Path, region: &Region, offset: usize) -> io::Result<usize> {
    let value = region.load_i64(offset, Relaxed);
    usize::try_from(value)
        .ok()
        .filter(|&v| v <= region.len())
        .ok_or_else(|| {
            invalid(
                io::ErrorKind::InvalidData,
                path,
                format!("bad length {value} at {offset}"),
            )
        })
}

fn check_length(path: &Path, region: &Region, expected: usize) -> io::Result<()> {
    if region.len() == expected {
        return Ok(());
    }
    let message = format!("{} bytes, the header implies {expected}", region.len());
    Err(invalid(io::ErrorKind::InvalidData, path, message))
}

fn invalid(kind: io::ErrorKind, path: &Path, error: impl std::fmt::Display) -> io::Error {
    io::Error::new(kind, format!("{}: {error}", path.display()))
}

#[cfg(test)]
#[path = "files_tests.rs"]
mod tests;
