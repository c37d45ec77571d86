//! The bindings in a dedicated worker of headless Chromium (FileReaderSync exists nowhere else).

use super::bindings::*;
use super::job::{Encoder, Job};
use super::protocol::{js_error, set};
use crate::error::Error;
use crate::seed::SeedConfig;
use js_sys::{Array, Function, Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::*;
use web_sys::File;

wasm_bindgen_test_configure!(run_in_dedicated_worker);

fn file(bytes: &[u8], name: &str) -> File {
    File::new_with_u8_array_sequence(&Array::of1(&Uint8Array::from(bytes)), name).unwrap()
}

fn get(obj: &JsValue, key: &str) -> JsValue {
    Reflect::get(obj, &key.into()).unwrap()
}

/// Applies drained chunks in order, as the worker's outputs do.
fn apply(out: &mut Vec<u8>, chunks: &Array) {
    for chunk in chunks.iter() {
        let offset = get(&chunk, "offset").as_f64().unwrap() as usize;
        let data = Uint8Array::new(&get(&chunk, "data")).to_vec();
        if out.len() < offset + data.len() {
            out.resize(offset + data.len(), 0);
        }
        out[offset..offset + data.len()].copy_from_slice(&data);
    }
}

/// The protocol's Target, with the largest seed a u64 holds (more than a JS number keeps exactly).
fn spec(format: &str, options: &str, output_name: &str) -> JsValue {
    let spec = Object::new();
    for (key, value) in [
        ("format", format),
        ("options", options),
        ("seed", "18446744073709551615"),
        ("epoch", "2"),
        ("outputName", output_name),
    ] {
        set(&spec, key, value);
    }
    spec.into()
}

fn raw_disk() -> Vec<u8> {
    let mut data = vec![0u8; 3 << 20];
    data[5] = 1;
    data[(2 << 20) + 7] = 2;
    data
}

#[wasm_bindgen_test]
fn errors_cross_as_plain_objects() {
    let e = js_error(&Error::corrupt("L2 table offset unaligned").at(0x30000).in_file("a.qcow2"));
    assert_eq!(get(&e, "kind").as_string().as_deref(), Some("corrupt"));
    assert_eq!(get(&e, "message").as_string().as_deref(), Some("L2 table offset unaligned"));
    assert_eq!(get(&e, "offset").as_f64(), Some(196608.0));
    assert_eq!(get(&e, "file").as_string().as_deref(), Some("a.qcow2"));
    assert!(get(&js_error(&Error::cancelled()), "offset").is_null());
}

#[wasm_bindgen_test]
fn inspect_reports_size_and_allocation() {
    let info = inspect(file(&raw_disk(), "disk.img"), Array::new()).unwrap();
    assert_eq!(get(&info, "format").as_string().as_deref(), Some("raw"));
    assert_eq!(get(&info, "virtualSize").as_f64(), Some((3 << 20) as f64));
    assert_eq!(get(&info, "allocatedBytes").as_f64(), Some((3 << 20) as f64));
    assert!(get(&info, "backingFile").is_null());
    assert_eq!(Array::from(&get(&info, "needsBacking")).length(), 0);
    let guest = get(&info, "guest");
    assert_eq!(get(&guest, "partitionTable").as_string().as_deref(), Some("none"));
    assert_eq!(Array::from(&get(&guest, "boot")).length(), 0);
}

#[wasm_bindgen_test]
fn compare_finds_the_first_differing_sector() {
    let disk = raw_disk();
    let progress = Function::new_no_args("");
    let same = compare(file(&disk, "a.img"), Array::new(), file(&disk, "b.img").into(), "b.img", &progress);
    assert_eq!(get(&same.unwrap(), "identical").as_bool(), Some(true));
    let mut changed = disk.clone();
    changed[(2 << 20) + 700] ^= 1;
    let diff = compare(file(&disk, "a.img"), Array::new(), file(&changed, "b.img").into(), "b.img", &progress);
    let diff = diff.unwrap();
    assert_eq!(get(&diff, "identical").as_bool(), Some(false));
    assert_eq!(get(&diff, "offset").as_f64(), Some(((2 << 20) + 512) as f64));
}

/// The written output, shared with a read-back function as the worker's OPFS file is.
type Written = std::rc::Rc<std::cell::RefCell<Vec<u8>>>;

/// Runs a job to the end as the coordinator worker does, with two encoders taking turns at each pass's
/// batches, writing into `out`; returns the progress seen after each batch and step, and the total it counts to.
fn drive(job: &mut Job, encoders: &mut [Encoder], out: &Written) -> (Vec<f64>, f64) {
    let total = job.total();
    let mut progress = vec![job.done()];
    while matches!(job.phase().as_str(), "scan" | "write") {
        let phase = job.phase();
        for turn in 0.. {
            let indices = job.next_indices((1 << 20) as f64).unwrap();
            if indices.is_empty() {
                break;
            }
            for index in indices {
                job.write_unit(index, encoders[turn % 2].encode(index, &phase).unwrap()).unwrap();
            }
            apply(&mut out.borrow_mut(), &job.take_chunks());
            progress.push(job.done());
        }
        job.end_pass().unwrap();
    }
    while !job.finish_step().unwrap() {
        apply(&mut out.borrow_mut(), &job.take_chunks());
        progress.push(job.done());
    }
    progress.push(job.done());
    let len = job.finish().unwrap();
    apply(&mut out.borrow_mut(), &job.take_chunks());
    out.borrow_mut().resize(len as usize, 0);
    (progress, total)
}

#[wasm_bindgen_test]
fn units_encoded_by_encoders_over_their_own_opening_make_the_image() {
    let disk = raw_disk();
    let input = file(&disk, "disk.img");
    let mut job = Job::new(input.clone(), Array::new(), spec("raw", "", "disk.raw"), JsValue::NULL).unwrap();
    assert_eq!(job.phase(), "write");
    let mut encoders: Vec<Encoder> =
        (0..2).map(|_| Encoder::new(input.clone(), Array::new(), spec("raw", "", "disk.raw")).unwrap()).collect();
    let out = Written::default();
    let (progress, total) = drive(&mut job, &mut encoders, &out);
    assert!(*out.borrow() == disk);
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
    assert_eq!(progress.last(), Some(&total));
    assert_eq!(job.phase(), "done");
    assert!(job.finish().is_err());
}

#[wasm_bindgen_test]
fn an_ova_hashes_its_disk_in_steps_that_report_progress() {
    let disk = raw_disk();
    let input = file(&disk, "disk.img");
    let target = || spec("ova", "", "vm.ova");
    let mut job = Job::new(input.clone(), Array::new(), target(), JsValue::NULL).unwrap();
    let mut encoders: Vec<Encoder> =
        (0..2).map(|_| Encoder::new(input.clone(), Array::new(), target()).unwrap()).collect();
    let out = Written::default();
    let reader = {
        let out = out.clone();
        Closure::<dyn Fn(f64, f64) -> Uint8Array>::new(move |offset: f64, length: f64| {
            let bytes = out.borrow();
            let (start, end) = (offset as usize, (offset + length) as usize);
            Uint8Array::from(&bytes[start.min(bytes.len())..end.min(bytes.len())])
        })
    };
    job.set_read_back(reader.as_ref().unchecked_ref::<Function>().clone());
    let (progress, total) = drive(&mut job, &mut encoders, &out);
    assert!(out.borrow().starts_with(b"vm.ovf"), "a tar whose first member is the descriptor");
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
    assert!(progress[..progress.len() - 1].iter().all(|&p| p < total), "100 % only at the end: {progress:?}");
    assert_eq!(progress.last(), Some(&total));
}

#[wasm_bindgen_test]
fn a_seed_disk_job_writes_the_seed_commands_disk() {
    let login = Object::new();
    set(&login, "hostname", "web-1");
    let mut job = Job::seed_disk(login.clone().into(), spec("raw", "", "seed.img")).unwrap();
    let out = Written::default();
    while matches!(job.phase().as_str(), "scan" | "write") {
        while job.encode_here((1 << 20) as f64).unwrap() {
            apply(&mut out.borrow_mut(), &job.take_chunks());
        }
        job.end_pass().unwrap();
    }
    while !job.finish_step().unwrap() {}
    let len = job.finish().unwrap();
    apply(&mut out.borrow_mut(), &job.take_chunks());
    out.borrow_mut().resize(len as usize, 0);
    let config = SeedConfig { hostname: Some("web-1".into()), ..SeedConfig::default() };
    let mut expected = crate::seed::image(&config, u64::MAX, 2).unwrap();
    let mut bytes = vec![0u8; expected.virtual_size() as usize];
    expected.read_at(0, &mut bytes).unwrap();
    assert!(*out.borrow() == bytes);
    let bad = Object::new();
    set(&bad, "hostname", "-bad-");
    assert_eq!(get(&Job::seed_disk(bad.into(), spec("raw", "", "s.img")).err().unwrap(), "kind"), "invalid-argument");
    let refused = Job::new(file(&raw_disk(), "d.img"), Array::new(), spec("vhdx", "", "d.vhdx"), login.into());
    assert_eq!(get(&refused.err().unwrap(), "kind"), "invalid-argument", "a login needs a package");
}

#[wasm_bindgen_test]
fn a_fixed_vhd_warns_that_its_size_is_rounded_up_to_a_whole_mib() {
    let mut disk = raw_disk();
    disk.extend_from_slice(&[0; 512]);
    let job = |options: &str, disk: &[u8]| {
        Job::new(file(disk, "d.img"), Array::new(), spec("vpc", options, "d.vhd"), JsValue::NULL).unwrap()
    };
    let warnings: Vec<String> = job("subformat=fixed", &disk).warnings().iter().filter_map(|w| w.as_string()).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains(&format!("from {} to {} bytes", (3 << 20) + 512, 4 << 20)), "{warnings:?}");
    assert_eq!(job("subformat=dynamic", &disk).warnings().length(), 0);
    assert_eq!(job("subformat=fixed", &raw_disk()).warnings().length(), 0, "already a whole MiB");
}

#[wasm_bindgen_test]
fn bad_options_formats_and_numbers_are_invalid_arguments() {
    let kind = |spec: JsValue| {
        let error = Job::blank(65536.0, spec).err().unwrap();
        get(&error, "kind").as_string().unwrap()
    };
    assert_eq!(kind(spec("raw", "bogus=1", "x.img")), "invalid-argument");
    assert_eq!(kind(spec("qed", "", "x.qed")), "invalid-argument");
    let big_seed = spec("raw", "", "x.img");
    set(big_seed.unchecked_ref(), "seed", "18446744073709551616");
    assert_eq!(kind(big_seed), "invalid-argument");
    assert!(Job::blank(65536.0, spec("raw", "", "x.img")).is_ok());
}
