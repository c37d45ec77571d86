//! Reading an OVA in place: the tar's members are listed from their headers, the `.ovf` descriptor names the
//! disks (`DiskSection` → `References`), and each disk is opened as an image through a window on the tar —
//! nothing is unpacked, so a 100 GB OVA needs no scratch space.

use crate::chain::Opener;
use crate::error::{Error, Result};
use crate::image::Image;
use crate::io::{ReadAt, Window};
use crate::tar;
use std::rc::Rc;

/// Members listed before giving up on a file that only looks like a tar.
const MAX_MEMBERS: usize = 10_000;
/// The descriptor is read whole; real ones are a few KiB.
const MAX_DESCRIPTOR: u64 = 4 << 20;

/// A member of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its name.
    pub name: String,
    /// Where its data starts in the archive.
    pub offset: u64,
    /// Its size.
    pub size: u64,
}

/// An OVA's members and, in the descriptor's order, the members holding its disks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// Every regular member.
    pub members: Vec<Member>,
    /// The disks, as the descriptor lists them.
    pub disks: Vec<Member>,
}

impl Package {
    /// Lists `file`'s members and finds its disks through the `.ovf` descriptor.
    ///
    /// # Errors
    /// `InvalidFormat` for a damaged tar or an OVA without a descriptor; `Corrupt` when the descriptor names a
    /// file the archive does not hold.
    pub fn read(file: &dyn ReadAt) -> Result<Package> {
        let members = list(file)?;
        let descriptor = members
            .iter()
            .find(|m| m.name.ends_with(".ovf"))
            .ok_or_else(|| Error::invalid("The OVA holds no .ovf descriptor"))?;
        if descriptor.size > MAX_DESCRIPTOR {
            return Err(Error::limit(format!("OVF descriptor of {} bytes is too large", descriptor.size)));
        }
        let mut xml = vec![0u8; descriptor.size as usize];
        file.read_exact_at(descriptor.offset, &mut xml)?;
        let xml = String::from_utf8_lossy(&xml);
        let files: Vec<(String, String)> =
            elements(&xml, "File").iter().filter_map(|a| Some((attr(a, "id")?, attr(a, "href")?))).collect();
        let mut disks = Vec::new();
        for disk in elements(&xml, "Disk") {
            // A disk without a file is created empty at deploy time; there is nothing to convert.
            let Some(file_ref) = attr(&disk, "fileRef") else { continue };
            let href = files
                .iter()
                .find(|(id, _)| *id == file_ref)
                .map(|(_, href)| href)
                .ok_or_else(|| Error::corrupt(format!("OVF disk refers to an unknown file id '{file_ref}'")))?;
            let member = members
                .iter()
                .find(|m| &m.name == href)
                .ok_or_else(|| Error::corrupt(format!("The OVA does not hold '{href}', which its descriptor names")))?;
            disks.push(member.clone());
        }
        if disks.is_empty() {
            return Err(Error::invalid("The OVF descriptor names no disk file"));
        }
        Ok(Package { members, disks })
    }
}

/// The regular members of a tar, from their headers.
fn list(file: &dyn ReadAt) -> Result<Vec<Member>> {
    let mut members = Vec::new();
    let mut pos = 0u64;
    let mut long_name: Option<String> = None;
    while pos + tar::BLOCK <= file.len() {
        let mut block = [0u8; 512];
        file.read_exact_at(pos, &mut block)?;
        let Some(entry) = tar::parse(&block).map_err(|e| e.at(pos))? else { break };
        let data = pos + tar::BLOCK;
        if data.checked_add(entry.size).is_none_or(|end| end > file.len()) {
            return Err(Error::corrupt(format!("Tar member '{}' runs past the end of the file", entry.name)).at(pos));
        }
        match entry.kind {
            // PAX and GNU long-name headers carry the next member's real name.
            b'x' | b'L' if entry.size <= 64 << 10 => {
                let mut text = vec![0u8; entry.size as usize];
                file.read_exact_at(data, &mut text)?;
                let text = String::from_utf8_lossy(&text);
                long_name = if entry.kind == b'L' {
                    Some(text.trim_end_matches('\0').to_string())
                } else {
                    text.lines().find_map(|l| l.split_once("path=").map(|(_, p)| p.to_string()))
                };
            }
            b'0' | 0 => {
                let name = long_name.take().unwrap_or(entry.name);
                members.push(Member { name, offset: data, size: entry.size });
                if members.len() > MAX_MEMBERS {
                    return Err(Error::limit(format!("More than {MAX_MEMBERS} members in the archive")));
                }
            }
            _ => long_name = None,
        }
        pos = data + entry.size + tar::padding(entry.size);
    }
    Ok(members)
}

/// The attribute lists of every `<NAME …>` element (any namespace prefix), entity-decoded later by [`attr`].
fn elements(xml: &str, name: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find('<') {
        rest = &rest[start + 1..];
        let tag_end = rest.find(|c: char| c.is_whitespace() || c == '>' || c == '/').unwrap_or(rest.len());
        let tag = &rest[..tag_end];
        let local = tag.rsplit(':').next().unwrap_or(tag);
        let close = rest.find('>').unwrap_or(rest.len());
        if local == name {
            found.push(rest[tag_end..close].to_string());
        }
        rest = &rest[close..];
    }
    found
}

/// The value of attribute `name` (any namespace prefix) in an attribute list.
fn attr(attrs: &str, name: &str) -> Option<String> {
    let mut rest = attrs;
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim();
        let local = key.rsplit(':').next().unwrap_or(key);
        let after = rest[eq + 1..].trim_start();
        let quote = after.chars().next()?;
        if quote != '"' && quote != '\'' {
            return None;
        }
        let value_end = after[1..].find(quote)? + 1;
        if local == name {
            let value = &after[1..value_end];
            return Some(
                value
                    .replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&quot;", "\"")
                    .replace("&apos;", "'")
                    .replace("&amp;", "&"),
            );
        }
        rest = &after[value_end + 1..];
    }
    None
}

/// Whether a file is a POSIX tar whose first member is an OVF descriptor, as DSP0243 orders an OVA.
pub fn probe(head: &[u8], _tail: &[u8]) -> bool {
    head.len() >= 263
        && &head[257..263] == b"ustar\0"
        && head[..100].split(|&b| b == 0).next().is_some_and(|n| n.ends_with(b".ovf"))
}

/// How many disks the OVA `file` holds.
///
/// # Errors
/// Whatever reading the package gives.
pub fn disk_count(file: &dyn ReadAt) -> Result<usize> {
    Ok(Package::read(file)?.disks.len())
}

/// Opens the disk the opener asks for (0-based, in the descriptor's order) of the OVA `file` named `name`, in
/// place (the table of formats' entry).
///
/// # Errors
/// `InvalidArgument` when there is no such disk, and whatever reading the package or the disk gives.
pub fn open(file: Box<dyn ReadAt>, name: &str, opener: &mut dyn Opener) -> Result<Box<dyn Image>> {
    let package = Package::read(file.as_ref())?;
    let index = opener.disk_index();
    let disk = package.disks.get(index).ok_or_else(|| {
        Error::argument(format!("The OVA has {} disk(s); there is no disk {}", package.disks.len(), index + 1))
    })?;
    let window = Window::new(Rc::from(file), disk.offset, disk.size);
    opener.open_file(&format!("{name}/{}", disk.name), Box::new(window), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_files_and_disks_with_any_prefix_and_entities() {
        let xml = r#"<Envelope><ovf:References><ovf:File ovf:href="a&amp;b.vmdk" ovf:id="f1" ovf:size="3"/>
            <File href='c.vmdk' id="f2"/></ovf:References><DiskSection><Disk ovf:diskId="d" ovf:fileRef="f2"/>
            <Disk ovf:capacity="1"/></DiskSection></Envelope>"#;
        let files = elements(xml, "File");
        assert_eq!(files.len(), 2);
        assert_eq!(attr(&files[0], "href").as_deref(), Some("a&b.vmdk"));
        assert_eq!(attr(&files[1], "id").as_deref(), Some("f2"));
        let disks = elements(xml, "Disk");
        assert_eq!(attr(&disks[0], "fileRef").as_deref(), Some("f2"));
        assert_eq!(attr(&disks[1], "fileRef"), None);
    }

    #[test]
    fn lists_members_and_refuses_a_member_past_the_end() {
        let mut tar = Vec::new();
        for (name, data) in [("vm.ovf", &b"<x/>"[..]), ("d.img", &[7u8; 600][..])] {
            tar.extend_from_slice(&tar::header(name, data.len() as u64, 0).unwrap());
            tar.extend_from_slice(data);
            tar.resize(tar.len() + tar::padding(data.len() as u64) as usize, 0);
        }
        tar.extend_from_slice(&[0; 1024]);
        let members = list(&tar).unwrap();
        assert_eq!(members[1], Member { name: "d.img".into(), offset: 1024 + 512, size: 600 });
        let cut = tar[..1024 + 512 + 100].to_vec();
        assert_eq!(list(&cut).unwrap_err().kind(), crate::ErrorKind::Corrupt);
    }
}
