//! VMDK streamOptimized output, end to end: raw sources converted onto a file (open-vmdk's layout B) and
//! onto an append-only stream (the spec's layout C), read back by qemu-img and libyal's vmdkinfo, plus the
//! byte layout of the empty 64 KiB disk and determinism across seeds and threads.

mod common;

use common::{assert_check_clean, assert_same_guest, ok, qemu_img, sparse_raw, tmp};
use diskbridge::convert::{RunOptions, run};
use diskbridge::extent::{Extent, ExtentKind};
use diskbridge::formats::Format;
use diskbridge::image::{Blank, Image, ImageInfo};
use diskbridge::io::{Sink, StreamSink};
use diskbridge::native::{OutputFile, open_image};
use diskbridge::options::OptionList;
use diskbridge::target::{Target, writer};
use diskbridge::writer::{OneOutput, Settings};
use std::path::Path;

const SEED: u64 = 0x5EED;

#[derive(Clone, Copy, PartialEq)]
enum Layout {
    /// A seekable file: vmdk-convert's layout.
    File,
    /// An append-only stream, as stdout is.
    Stream,
}

fn target(options: &str, seed: u64, out: &Path) -> Target {
    Target {
        format: Format::from_name("vmdk").unwrap(),
        options: OptionList::parse(options).unwrap(),
        settings: Settings {
            seed,
            epoch: 0,
            output_name: out.file_name().unwrap().to_string_lossy().into_owned(),
            compressed: false,
            seed_disk: None,
        },
    }
}

fn convert_with(raw: &Path, out: &Path, layout: Layout, options: &str, seed: u64, threads: usize) {
    convert_image(open_image(raw, Some(Format::raw())).unwrap(), out, layout, options, seed, threads);
}

fn convert_image(source: Box<dyn Image>, out: &Path, layout: Layout, options: &str, seed: u64, threads: usize) {
    let sink: Box<dyn Sink> = match layout {
        Layout::File => Box::new(OutputFile::create(out).unwrap()),
        Layout::Stream => Box::new(StreamSink::new(std::fs::File::create(out).unwrap())),
    };
    let w = writer(&target(options, seed, out), source.virtual_size(), &mut OneOutput::new(sink)).unwrap();
    run(source, w, RunOptions { threads, ..Default::default() }).unwrap();
}

fn convert(raw: &Path, out: &Path, layout: Layout) {
    convert_with(raw, out, layout, "", SEED, 1);
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

/// Walks the file's own metadata and checks the layout to the sector: grains packed in ascending LBA order
/// from `overHead`, each behind a marker carrying its LBA (open-vmdk's reader checks that; qemu does not);
/// layout B's GD and preallocated GTs in front; layout C's GT marker + GT after each table's grains, then GD
/// marker + GD, footer marker + footer; and the end-of-stream sector last, with nothing after it.
fn check_structure(vmdk: &[u8], layout: Layout) {
    assert_eq!(vmdk.len() % 512, 0);
    let sectors = (vmdk.len() / 512) as u64;
    let at = |sector: u64| &vmdk[sector as usize * 512..];
    let header = at(0);
    assert_eq!((u32_at(header, 4), u32_at(header, 8)), (3, 0x30001), "version, flags");
    assert_eq!((u64_at(header, 20), u32_at(header, 44), u64_at(header, 48)), (128, 512, 0), "grain, GTEs, RGD");
    let capacity = u64_at(header, 12);
    let gt_count = capacity.div_ceil(128).div_ceil(512);
    let gd_sectors = (gt_count * 4).div_ceil(512);
    let metadata_marker = |sector: u64, num: u64, kind: u32| {
        assert_eq!((u64_at(at(sector), 0), u32_at(at(sector), 8), u32_at(at(sector), 12)), (num, 0, kind));
        assert!(at(sector)[16..512].iter().all(|&b| b == 0));
    };
    let (gd_offset, mut pos) = match layout {
        Layout::File => {
            let overhead = 21 + gd_sectors + 4 * gt_count;
            assert_eq!((u64_at(header, 56), u64_at(header, 64)), (21, overhead), "gdOffset, overHead");
            (21, overhead)
        }
        Layout::Stream => {
            assert_eq!((u64_at(header, 56), u64_at(header, 64)), (u64::MAX, 128), "GD_AT_END, overHead");
            let footer = at(sectors - 2);
            assert_eq!(footer[..56], header[..56], "the footer is the header but for gdOffset");
            assert_eq!(footer[64..512], header[64..512]);
            (u64_at(footer, 56), 128)
        }
    };
    for gt in 0..gt_count {
        let gt_sector = u64::from(u32_at(at(gd_offset), gt as usize * 4));
        for e in 0..512 {
            let grain = u64::from(u32_at(at(gt_sector), e * 4));
            if grain == 0 {
                continue;
            }
            assert_eq!(grain, pos, "grain {gt}/{e} follows the previous one");
            assert_eq!(u64_at(at(grain), 0), (gt * 512 + e as u64) * 128, "marker LBA of grain {gt}/{e}");
            pos += (12 + u64::from(u32_at(at(grain), 8))).div_ceil(512);
        }
        match layout {
            Layout::File => assert_eq!(gt_sector, 21 + gd_sectors + 4 * gt, "GT {gt} preallocated"),
            Layout::Stream => {
                metadata_marker(pos, 4, 1);
                assert_eq!(gt_sector, pos + 1, "GT {gt} behind its marker");
                pos += 5;
            }
        }
    }
    if layout == Layout::Stream {
        metadata_marker(pos, gd_sectors, 2);
        assert_eq!(gd_offset, pos + 1, "GD behind its marker");
        pos += 1 + gd_sectors;
        metadata_marker(pos, 1, 3);
        pos += 2;
    }
    assert_eq!(pos + 1, sectors, "the end-of-stream sector comes next, and nothing after it");
    assert!(at(pos)[..512].iter().all(|&b| b == 0), "end-of-stream marker");
}

/// qemu-img, vmdkinfo and our own walk all accept `vmdk` as a copy of `raw`.
fn check_against(raw: &Path, vmdk: &Path, layout: Layout) {
    assert_same_guest(raw, vmdk);
    assert_check_clean(vmdk);
    let info = qemu_img(&["info", "--output=json", vmdk.to_str().unwrap()]);
    assert!(info.contains("\"format\": \"vmdk\""), "{info}");
    let size = std::fs::metadata(raw).unwrap().len().div_ceil(512) * 512;
    assert!(info.contains(&format!("\"virtual-size\": {size},")), "{info}");
    ok("vmdkinfo", &[vmdk.to_str().unwrap()]);
    check_structure(&std::fs::read(vmdk).unwrap(), layout);
}

/// Where a conversion reads the guest data; qemu-img always compares the output with the raw file.
#[derive(Clone, Copy)]
enum Source {
    /// The raw file itself, through the raw reader.
    Raw,
    /// The same data from a guest map that skips the holes: the raw reader would read a big sparse file
    /// whole, which an unoptimised test build does slowly.
    Islands,
}

/// Converts a sparse raw disk (`sparse_raw` data) onto both layouts and checks each output against it.
fn round_trip(size: u64, data_at: &[(u64, usize)], from: Source) {
    let dir = tmp();
    let raw = dir.path().join("src.raw");
    sparse_raw(&raw, size, data_at);
    for layout in [Layout::File, Layout::Stream] {
        let out = dir.path().join("out.vmdk");
        match from {
            Source::Raw => convert(&raw, &out, layout),
            Source::Islands => {
                convert_image(Box::new(Islands::like_sparse_raw(size, data_at)), &out, layout, "", SEED, 1)
            }
        }
        check_against(&raw, &out, layout);
    }
}

#[test]
fn empty_64k_disk_is_laid_out_like_vmdk_convert() {
    // `create` converts a blank source: no unit ever reaches the writer.
    let dir = tmp();
    let out = dir.path().join("64KiB.vmdk");
    convert_image(Box::new(Blank::new(65536)), &out, Layout::File, "", SEED, 1);
    let b = std::fs::read(&out).unwrap();
    assert_eq!(b.len(), 13_824, "27 sectors");
    #[rustfmt::skip]
    let header: [u8; 80] = [
        0x4B, 0x44, 0x4D, 0x56,  0x03, 0x00, 0x00, 0x00,  0x01, 0x00, 0x03, 0x00,  0x80, 0x00, 0x00, 0x00,
        //  'KDMV'               | version 3             | flags 0x00030001      | capacity 128 …
        0x00, 0x00, 0x00, 0x00,  0x80, 0x00, 0x00, 0x00,  0x00, 0x00, 0x00, 0x00,  0x01, 0x00, 0x00, 0x00,
        //  … capacity           | grainSize 128                                  | descriptorOffset 1 …
        0x00, 0x00, 0x00, 0x00,  0x14, 0x00, 0x00, 0x00,  0x00, 0x00, 0x00, 0x00,  0x00, 0x02, 0x00, 0x00,
        //                       | descriptorSize 20                              | numGTEsPerGT 512
        0x00, 0x00, 0x00, 0x00,  0x00, 0x00, 0x00, 0x00,  0x15, 0x00, 0x00, 0x00,  0x00, 0x00, 0x00, 0x00,
        //  rgdOffset 0                                   | gdOffset 21
        0x1A, 0x00, 0x00, 0x00,  0x00, 0x00, 0x00, 0x00,  0x00, 0x0A, 0x20, 0x0D,  0x0A, 0x01, 0x00, 0x00,
        //  overHead 26 = 21 + 1 GD sector + 4 GT sectors | unclean 0, '\n' ' ' '\r' '\n', compressAlgorithm 1
    ];
    assert_eq!(b[..80], header);
    assert!(b[80..512].iter().all(|&x| x == 0), "header pad");
    let descriptor = String::from_utf8(b[512..21 * 512].iter().copied().take_while(|&c| c != 0).collect()).unwrap();
    assert!(descriptor.starts_with("# Disk DescriptorFile\nversion=1\nencoding=\"UTF-8\"\nCID="));
    assert!(descriptor.contains("\nRW 128 SPARSE \"64KiB.vmdk\"\n"));
    assert!(descriptor.contains("\nddb.geometry.cylinders = \"1\"\n"));
    assert!(descriptor.ends_with("\nddb.toolsVersion = \"2147483647\""));
    assert!(b[512 + descriptor.len()..21 * 512].iter().all(|&x| x == 0), "descriptor NUL-padded to sector 21");
    assert_eq!(b[21 * 512..21 * 512 + 4], [22, 0, 0, 0], "GD at sector 21: GDE[0] = 22");
    assert!(b[21 * 512 + 4..22 * 512].iter().all(|&x| x == 0), "rest of the GD");
    assert!(b[22 * 512..26 * 512].iter().all(|&x| x == 0), "GT[0] at sectors 22–25, no grains");
    assert!(b[26 * 512..].iter().all(|&x| x == 0), "EOS at sector 26, nothing after it");

    // A source that holds 64 KiB of zeros gives the same file.
    let raw = dir.path().join("src.raw");
    sparse_raw(&raw, 65536, &[]);
    check_against(&raw, &out, Layout::File);
    let same = dir.path().join("again");
    std::fs::create_dir(&same).unwrap();
    convert(&raw, &same.join("64KiB.vmdk"), Layout::File);
    assert!(std::fs::read(same.join("64KiB.vmdk")).unwrap() == b);
}

#[test]
fn empty_64k_disk_as_a_stream() {
    let dir = tmp();
    let raw = dir.path().join("src.raw");
    sparse_raw(&raw, 65536, &[]);
    let out = dir.path().join("s.vmdk");
    convert(&raw, &out, Layout::Stream);
    let b = std::fs::read(&out).unwrap();
    let sector = |n: usize| &b[n * 512..(n + 1) * 512];
    assert_eq!(b.len(), 138 * 512);
    assert_eq!(u64_at(&b, 64), 128, "overHead");
    assert!(b[21 * 512..128 * 512].iter().all(|&x| x == 0), "padding up to overHead");
    assert_eq!(sector(128)[..16], [4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0], "GT marker (4 sectors)");
    assert!(b[129 * 512..133 * 512].iter().all(|&x| x == 0), "empty GT[0]");
    assert_eq!(sector(133)[..16], [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0], "GD marker (1 sector)");
    assert_eq!(sector(134)[..4], [129, 0, 0, 0], "GDE[0] = 129");
    assert_eq!(sector(135)[..16], [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0], "footer marker");
    assert_eq!(u64_at(sector(136), 56), 134, "footer gdOffset");
    assert_eq!(sector(137), [0; 512], "EOS");
    check_against(&raw, &out, Layout::Stream);
}

#[test]
fn data_with_holes_and_a_partial_last_grain() {
    // 100 KiB: one whole grain and a 36 KiB tail, data in both.
    round_trip(100 << 10, &[(1000, 5000), (70_000, 30_000)], Source::Raw);
}

#[test]
fn sparse_billion_bytes_with_data_at_the_very_end() {
    // 1,000,000,000 bytes: 30 grain tables, the last grain 51,712 bytes.
    round_trip(1_000_000_000, &[(0, 4096), (33 << 20, 200_000), (999_999_000, 1000)], Source::Islands);
}

#[test]
fn all_zero_disk() {
    let dir = tmp();
    let raw = dir.path().join("zero.raw");
    std::fs::write(&raw, vec![0u8; 3 << 20]).unwrap();
    for layout in [Layout::File, Layout::Stream] {
        let out = dir.path().join("out.vmdk");
        convert(&raw, &out, layout);
        check_against(&raw, &out, layout);
        let expected = if layout == Layout::File { 27 } else { 138 };
        assert_eq!(std::fs::metadata(&out).unwrap().len(), expected * 512, "no grain stored");
    }
}

#[test]
fn several_grain_tables_with_an_empty_one_between() {
    // 100 MiB = 4 tables of 32 MiB; the third holds nothing.
    round_trip(100 << 20, &[(0, 1 << 20), (32 << 20, 3 << 20), ((100 << 20) - 70_000, 70_000)], Source::Raw);
}

#[test]
fn threads_seed_and_name_decide_the_bytes() {
    let dir = tmp();
    let raw = dir.path().join("src.raw");
    sparse_raw(&raw, 40 << 20, &[(0, 3 << 20), (34 << 20, 1 << 20)]);
    for layout in [Layout::File, Layout::Stream] {
        let out = |name: &str, seed: u64, threads: usize| {
            let path = dir.path().join(name);
            convert_with(&raw, &path, layout, "compression_level=1", seed, threads);
            std::fs::read(path).unwrap()
        };
        let one = out("a.vmdk", 1, 1);
        let again = dir.path().join("again");
        std::fs::create_dir_all(&again).unwrap();
        assert!(one == out("again/a.vmdk", 1, 4), "4 threads and 1 give the same bytes");
        assert!(one != out("a.vmdk", 2, 1), "another seed, another CID");
        assert!(one != out("b.vmdk", 1, 1), "the extent is named after the file");
    }
}

#[test]
fn seed_line_options_and_errors_through_the_target() {
    let dir = tmp();
    let raw = dir.path().join("src.raw");
    sparse_raw(&raw, 1 << 20, &[(4096, 10_000)]);
    let out = dir.path().join("disk-0.vmdk");
    convert_with(&raw, &out, Layout::File, "adapter_type=lsilogic,subformat=streamOptimized,compat6", SEED, 2);
    let b = std::fs::read(&out).unwrap();
    let text = String::from_utf8_lossy(&b[512..21 * 512]);
    assert!(text.contains("ddb.virtualHWVersion = \"6\"\n"));
    check_against(&raw, &out, Layout::File);

    let t = target("subformat=monolithicFlat", SEED, &out);
    let sink = Box::new(OutputFile::create(&out).unwrap());
    let err = writer(&t, 1 << 20, &mut OneOutput::new(sink)).err().unwrap();
    assert_eq!(err.kind(), diskbridge::ErrorKind::Unsupported);
    let t = target("cluster_size=65536", SEED, &out);
    let err = writer(&t, 1 << 20, &mut OneOutput::new(Box::new(OutputFile::create(&out).unwrap()))).err().unwrap();
    assert_eq!(err.message(), "Invalid parameter 'cluster_size' for format vmdk");
}

/// A disk of any size holding data only in a few islands, without a file of that size behind it.
struct Islands {
    info: ImageInfo,
    islands: Vec<(u64, Vec<u8>)>,
}

impl Islands {
    /// The disk `sparse_raw(path, size, data_at)` writes.
    fn like_sparse_raw(size: u64, data_at: &[(u64, usize)]) -> Self {
        let islands =
            data_at.iter().enumerate().map(|(i, &(at, len))| (at, common::pattern(len, i as u64 + 1))).collect();
        Islands { info: ImageInfo::basic("raw", size), islands }
    }
}

impl Image for Islands {
    fn info(&self) -> &ImageInfo {
        &self.info
    }

    fn extent_at(&mut self, offset: u64) -> diskbridge::Result<Extent> {
        let mut end = self.info.virtual_size;
        for (start, data) in &self.islands {
            let stop = start + data.len() as u64;
            if (*start..stop).contains(&offset) {
                return Ok(Extent { offset, length: stop - offset, kind: ExtentKind::Data });
            }
            if *start > offset {
                end = end.min(*start);
            }
        }
        Ok(Extent { offset, length: end - offset, kind: ExtentKind::Unallocated })
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> diskbridge::Result<()> {
        buf.fill(0);
        for (start, data) in &self.islands {
            let from = offset.max(*start);
            let to = (offset + buf.len() as u64).min(start + data.len() as u64);
            if from < to {
                buf[(from - offset) as usize..(to - offset) as usize]
                    .copy_from_slice(&data[(from - start) as usize..(to - start) as usize]);
            }
        }
        Ok(())
    }

    fn file_length(&self) -> u64 {
        0
    }
}

#[test]
fn disk_larger_than_2_tib_with_data_past_it() {
    // The file stays small, but capacity, LBAs and the GD index outgrow 32 bits' worth of sectors.
    let size = (2 << 40) + (3 << 20);
    let data_at = [(4096, 5000), (size - 200_000, 200_000)];
    let tail = common::pattern(200_000, 2);
    let dir = tmp();
    for layout in [Layout::File, Layout::Stream] {
        let out = dir.path().join("big.vmdk");
        convert_image(Box::new(Islands::like_sparse_raw(size, &data_at)), &out, layout, "", SEED, 2);
        assert_check_clean(&out);
        let info = qemu_img(&["info", "--output=json", out.to_str().unwrap()]);
        assert!(info.contains(&format!("\"virtual-size\": {size},")), "{info}");
        ok("vmdkinfo", &[out.to_str().unwrap()]);
        check_structure(&std::fs::read(&out).unwrap(), layout);
        // qemu-img compare would read all 2 TiB; read back the last 4 MiB instead.
        let part = dir.path().join("part.raw");
        let skip = format!("skip={}", (size >> 20) - 4);
        let (input, output) = (format!("if={}", out.display()), format!("of={}", part.display()));
        qemu_img(&["dd", "-f", "vmdk", "-O", "raw", "bs=1M", &skip, &input, &output]);
        let back = std::fs::read(&part).unwrap();
        assert_eq!(back.len(), 4 << 20);
        let split = back.len() - tail.len();
        assert!(back[..split].iter().all(|&b| b == 0));
        assert!(back[split..] == tail[..], "the tail reads back");
    }
}
