//! The OVF descriptor and manifest that make a streamOptimized VMDK deployable with ESXi's
//! "Deploy OVF Template" (DMTF DSP0243; VMware's extensions as open-vmdk's templates write them).

use crate::error::{Error, Result};
use crate::options::OptionList;
use std::fmt::Write;

/// The `-o` keys of the VM around the disk (the disk's own keys are its format's).
pub const OPTIONS: &[&str] = &["name", "cpus", "memory", "controller", "nic", "firmware", "hw"];

/// The VM around the disk: `-o` keys for `-O ova` / `-O ovf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OvfOptions {
    /// VM name (`name=`), default: the output's base name.
    pub name: String,
    /// Virtual CPUs (`cpus=`, 2).
    pub cpus: u32,
    /// Memory in MiB (`memory=`, 2048).
    pub memory_mib: u64,
    /// SCSI controller the VM gets (`controller=`).
    pub controller: Controller,
    /// Network adapter (`nic=`).
    pub nic: Nic,
    /// Firmware (`firmware=bios|efi|auto`); `auto` is resolved from the guest's partition table.
    pub firmware: Firmware,
    /// Virtual hardware version N of `hw=vmx-N` (13 = ESXi 6.5).
    pub hardware_version: u32,
}

/// The VM's SCSI controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Controller {
    /// LSI Logic parallel — the seed's choice; RHEL 8/9-family kernels lack its driver.
    LsiLogic,
    /// VMware Paravirtual SCSI — driver (vmw_pvscsi) in every current distribution kernel.
    Pvscsi,
    /// LSI Logic SAS.
    LsiLogicSas,
}

/// The VM's network adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nic {
    /// VMware's paravirtual NIC.
    Vmxnet3,
    /// Intel e1000 emulation.
    E1000,
    /// Intel e1000e emulation.
    E1000e,
    /// No network adapter.
    None,
}

/// Firmware the VM boots with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// Legacy BIOS.
    Bios,
    /// UEFI.
    Efi,
    /// Decided from the guest's partition table.
    Auto,
}

impl OvfOptions {
    /// Takes the OVF keys out of `options` (the VMDK keys stay for the disk's writer).
    pub fn from_options(options: &mut OptionList, default_name: &str) -> Result<Self> {
        let bad = |key: &str, value: &str| Error::argument(format!("Invalid value '{value}' for option '{key}'"));
        let controller = match options.take("controller").as_deref() {
            None | Some("lsilogic") => Controller::LsiLogic,
            Some("pvscsi") => Controller::Pvscsi,
            Some("lsilogicsas") => Controller::LsiLogicSas,
            Some(v) => return Err(bad("controller", v)),
        };
        let nic = match options.take("nic").as_deref() {
            None | Some("vmxnet3") => Nic::Vmxnet3,
            Some("e1000") => Nic::E1000,
            Some("e1000e") => Nic::E1000e,
            Some("none") => Nic::None,
            Some(v) => return Err(bad("nic", v)),
        };
        let firmware = match options.take("firmware").as_deref() {
            None | Some("auto") => Firmware::Auto,
            Some("bios") => Firmware::Bios,
            Some("efi") => Firmware::Efi,
            Some(v) => return Err(bad("firmware", v)),
        };
        let hardware_version = match options.take("hw") {
            None => 13,
            Some(v) => v
                .strip_prefix("vmx-")
                .and_then(|n| n.parse().ok())
                .filter(|n| (4..=99).contains(n))
                .ok_or_else(|| bad("hw", &v))?,
        };
        let cpus = options.take_u64("cpus")?.unwrap_or(2);
        let memory_mib = options.take_u64("memory")?.unwrap_or(2048);
        if !(1..=768).contains(&cpus) {
            return Err(bad("cpus", &cpus.to_string()));
        }
        if !(4..=(24 << 20)).contains(&memory_mib) {
            return Err(bad("memory", &memory_mib.to_string()));
        }
        let name = options.take("name").unwrap_or_else(|| default_name.to_string());
        if name.is_empty() || name.chars().any(char::is_control) {
            return Err(bad("name", &name));
        }
        Ok(OvfOptions { name, cpus: cpus as u32, memory_mib, controller, nic, firmware, hardware_version })
    }

    /// The manifest's digest: SHA256 from vmx-13 (ESXi 6.5) on, SHA1 for older hosts that know nothing else.
    pub fn digest(&self) -> Digest {
        if self.hardware_version >= 13 { Digest::Sha256 } else { Digest::Sha1 }
    }
}

/// A manifest digest algorithm, named as ESXi expects it (never `SHA2-256`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Digest {
    /// `SHA1(name)= hex`.
    Sha1,
    /// `SHA256(name)= hex`.
    Sha256,
}

/// An incremental digest of either algorithm.
pub enum Hasher {
    /// SHA-1 state.
    Sha1(sha1::Sha1),
    /// SHA-256 state.
    Sha256(sha2::Sha256),
}

impl Hasher {
    /// A fresh state.
    pub fn new(digest: Digest) -> Self {
        use sha2::Digest as _;
        match digest {
            Digest::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            Digest::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
        }
    }

    /// Adds bytes.
    pub fn update(&mut self, data: &[u8]) {
        use sha2::Digest as _;
        match self {
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
        }
    }

    /// The digest in lower-case hex.
    pub fn hex(self) -> String {
        use sha2::Digest as _;
        let bytes: Vec<u8> = match self {
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
        };
        bytes.iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }
}

/// A manifest line: `SHA256(name)= hex`.
pub fn manifest_line(digest: Digest, name: &str, hex: &str) -> String {
    let algorithm = match digest {
        Digest::Sha1 => "SHA1",
        Digest::Sha256 => "SHA256",
    };
    format!("{algorithm}({name})= {hex}\n")
}

/// Facts about the disk file the descriptor references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskFile {
    /// Its name in the package.
    pub href: String,
    /// Its exact size in bytes (`ovf:size`).
    pub size: u64,
    /// The guest disk's size in bytes (`ovf:capacity`).
    pub capacity: u64,
    /// Guest bytes stored in it (`ovf:populatedSize`).
    pub populated: u64,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The defaults of the properties a deployer is asked for, which cloud-init's OVF datasource reads from the
/// `ovf-env.xml` the host hands the guest: a package without a seed disk carries them so that "Deploy OVF
/// Template" (vCenter) can create the first login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Properties {
    /// `instance-id`: a new one makes cloud-init set the guest up again.
    pub instance_id: String,
    /// `hostname`.
    pub hostname: String,
}

/// The descriptor's `ProductSection`: cloud-init's OVF datasource keys, each one the deployer may set.
fn product_section(properties: &Properties) -> String {
    let property = |key: &str, value: &str, label: &str, description: &str| {
        format!(
            r#"      <Property ovf:key="{key}" ovf:type="string" ovf:userConfigurable="true" ovf:value="{value}">
        <Label>{label}</Label>
        <Description>{description}</Description>
      </Property>
"#,
            value = escape(value)
        )
    };
    [
        "    <ProductSection ovf:required=\"false\">\n      <Info>First login: settings cloud-init reads at first boot</Info>\n"
            .to_string(),
        property(
            "instance-id",
            &properties.instance_id,
            "Instance ID",
            "Any text, different for each machine: cloud-init sets the guest up again when it changes.",
        ),
        property("hostname", &properties.hostname, "Host name", "The guest's host name."),
        property(
            "public-keys",
            "",
            "SSH public keys",
            "OpenSSH public keys (ssh-ed25519 AAAA... user@host) for the image's default user, one per line.",
        ),
        property(
            "password",
            "",
            "Password",
            "A password for the image's default user, for the console and SSH. Leave empty to log in with a key only.",
        ),
        property(
            "user-data",
            "",
            "User data (base64)",
            "cloud-init user data (#cloud-config or a script), base64-encoded. Optional.",
        ),
        "    </ProductSection>\n".to_string(),
    ]
    .concat()
}

/// The OVF descriptor for one VM with its streamOptimized disks, all on the one SCSI controller (the converted
/// disk first), and, given `properties`, the `ProductSection` that asks the deployer for a first login and the
/// ISO and guestinfo transports that hand it to the guest. `firmware` must be resolved (not `Auto`).
pub fn descriptor(
    opts: &OvfOptions,
    firmware: Firmware,
    disks: &[DiskFile],
    properties: Option<&Properties>,
) -> String {
    let name = escape(&opts.name);
    let (scsi_subtype, scsi_label) = match opts.controller {
        Controller::LsiLogic => ("lsilogic", "LSI Logic"),
        Controller::Pvscsi => ("VirtualSCSI", "VMware Paravirtual"),
        Controller::LsiLogicSas => ("lsilogicsas", "LSI Logic SAS"),
    };
    let mut xml = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <References>
"#,
    );
    for (i, disk) in disks.iter().enumerate() {
        let _ = writeln!(
            xml,
            r#"    <File ovf:href="{href}" ovf:id="file{n}" ovf:size="{size}"/>"#,
            href = escape(&disk.href),
            n = i + 1,
            size = disk.size
        );
    }
    xml += "  </References>\n  <DiskSection>\n    <Info>Virtual disk information</Info>\n";
    for (i, disk) in disks.iter().enumerate() {
        let _ = writeln!(
            xml,
            r#"    <Disk ovf:diskId="vmdisk{n}" ovf:fileRef="file{n}" ovf:capacity="{capacity}" ovf:capacityAllocationUnits="byte" ovf:populatedSize="{populated}" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>"#,
            n = i + 1,
            capacity = disk.capacity,
            populated = disk.populated,
        );
    }
    xml += "  </DiskSection>\n";
    if opts.nic != Nic::None {
        xml += r#"  <NetworkSection>
    <Info>The list of logical networks</Info>
    <Network ovf:name="VM Network">
      <Description>The VM Network network</Description>
    </Network>
  </NetworkSection>
"#;
    }
    let _ = write!(
        xml,
        r#"  <VirtualSystem ovf:id="{name}">
    <Info>A virtual machine</Info>
    <Name>{name}</Name>
    <OperatingSystemSection ovf:id="101" vmw:osType="other3xLinux64Guest">
      <Info>The kind of installed guest operating system</Info>
    </OperatingSystemSection>
"#
    );
    if let Some(properties) = properties {
        xml += &product_section(properties);
    }
    // The ISO transport is a CD-ROM holding ovf-env.xml, which the VM already has; guestinfo reaches VMware Tools.
    let transport = if properties.is_some() { r#" ovf:transport="iso com.vmware.guestInfo""# } else { "" };
    let _ = write!(
        xml,
        r#"    <VirtualHardwareSection{transport}>
      <Info>Virtual hardware requirements</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>{name}</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>vmx-{hw:02}</vssd:VirtualSystemType>
      </System>
      <Item>
        <rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>
        <rasd:Description>Number of Virtual CPUs</rasd:Description>
        <rasd:ElementName>{cpus} virtual CPU(s)</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>{cpus}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:Description>Memory Size</rasd:Description>
        <rasd:ElementName>{memory}MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>{memory}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:Description>SCSI Controller</rasd:Description>
        <rasd:ElementName>{scsi_label} SCSI Controller 0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>{scsi_subtype}</rasd:ResourceSubType>
        <rasd:ResourceType>6</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:Description>IDE Controller</rasd:Description>
        <rasd:ElementName>VirtualIDEController 0</rasd:ElementName>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:ResourceType>5</rasd:ResourceType>
      </Item>
      <Item ovf:required="false">
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:AutomaticAllocation>false</rasd:AutomaticAllocation>
        <rasd:ElementName>CD-ROM 1</rasd:ElementName>
        <rasd:InstanceID>5</rasd:InstanceID>
        <rasd:Parent>4</rasd:Parent>
        <rasd:ResourceSubType>vmware.cdrom.remotepassthrough</rasd:ResourceSubType>
        <rasd:ResourceType>15</rasd:ResourceType>
      </Item>
"#,
        hw = opts.hardware_version,
        cpus = opts.cpus,
        memory = opts.memory_mib,
    );
    // Instance ids: 6 for the first disk, 7 for the network adapter, 8 on for the other disks.
    for i in 0..disks.len() {
        let _ = write!(
            xml,
            r#"      <Item>
        <rasd:AddressOnParent>{i}</rasd:AddressOnParent>
        <rasd:ElementName>Hard Disk {n}</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk{n}</rasd:HostResource>
        <rasd:InstanceID>{id}</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
"#,
            n = i + 1,
            id = if i == 0 { 6 } else { 7 + i },
        );
    }
    let nic = match opts.nic {
        Nic::Vmxnet3 => Some(("VmxNet3", "VmxNet3 ethernet adapter")),
        Nic::E1000 => Some(("E1000", "E1000 ethernet adapter")),
        Nic::E1000e => Some(("E1000e", "E1000e ethernet adapter")),
        Nic::None => None,
    };
    if let Some((subtype, description)) = nic {
        let _ = write!(
            xml,
            r#"      <Item>
        <rasd:AddressOnParent>7</rasd:AddressOnParent>
        <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>
        <rasd:Connection>VM Network</rasd:Connection>
        <rasd:Description>{description} on "VM Network"</rasd:Description>
        <rasd:ElementName>Ethernet 1</rasd:ElementName>
        <rasd:InstanceID>7</rasd:InstanceID>
        <rasd:ResourceSubType>{subtype}</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType>
      </Item>
"#
        );
    }
    let firmware = if firmware == Firmware::Efi { "efi" } else { "bios" };
    let _ = write!(
        xml,
        r#"      <vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="{firmware}"/>
      <vmw:Config ovf:required="false" vmw:key="uefi.secureBoot.enabled" vmw:value="false"/>
      <vmw:Config ovf:required="false" vmw:key="tools.syncTimeWithHost" vmw:value="false"/>
      <vmw:Config ovf:required="false" vmw:key="powerOpInfo.powerOffType" vmw:value="soft"/>
      <vmw:Config ovf:required="false" vmw:key="powerOpInfo.resetType" vmw:value="soft"/>
      <vmw:Config ovf:required="false" vmw:key="powerOpInfo.suspendType" vmw:value="soft"/>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"#
    );
    xml
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(text: &str) -> OvfOptions {
        let mut o = OptionList::parse(text).unwrap();
        let r = OvfOptions::from_options(&mut o, "vm").unwrap();
        o.finish("ova").unwrap();
        r
    }

    #[test]
    fn defaults_are_the_mdx1_profile() {
        let o = opts("");
        assert_eq!((o.cpus, o.memory_mib, o.controller, o.nic), (2, 2048, Controller::LsiLogic, Nic::Vmxnet3));
        assert_eq!((o.firmware, o.hardware_version, o.digest()), (Firmware::Auto, 13, Digest::Sha256));
        assert_eq!(opts("hw=vmx-11").digest(), Digest::Sha1);
    }

    #[test]
    fn bad_values_are_named() {
        let mut o = OptionList::parse("controller=ide").unwrap();
        let e = OvfOptions::from_options(&mut o, "vm").unwrap_err();
        assert!(e.message().contains("controller"), "{e}");
        assert!(OvfOptions::from_options(&mut OptionList::parse("hw=13").unwrap(), "vm").is_err());
    }

    #[test]
    fn descriptor_carries_sizes_hardware_and_escaped_name() {
        let o = opts("name=a<b,controller=pvscsi,nic=e1000,cpus=4,memory=4096,hw=vmx-17");
        let disk = DiskFile { href: "vm-disk1.vmdk".into(), size: 13824, capacity: 65536, populated: 0 };
        let xml = descriptor(&o, Firmware::Efi, &[disk], None);
        for needle in [
            r#"<File ovf:href="vm-disk1.vmdk" ovf:id="file1" ovf:size="13824"/>"#,
            r#"ovf:capacity="65536" ovf:capacityAllocationUnits="byte" ovf:populatedSize="0""#,
            "vmdk.html#streamOptimized",
            "<vssd:VirtualSystemType>vmx-17</vssd:VirtualSystemType>",
            "<rasd:ResourceSubType>VirtualSCSI</rasd:ResourceSubType>",
            "<rasd:ResourceSubType>E1000</rasd:ResourceSubType>",
            "<rasd:VirtualQuantity>4096</rasd:VirtualQuantity>",
            r#"vmw:key="firmware" vmw:value="efi""#,
            "<Name>a&lt;b</Name>",
        ] {
            assert!(xml.contains(needle), "missing {needle}");
        }
    }

    #[test]
    fn manifest_lines_are_what_esxi_parses() {
        let mut h = Hasher::new(Digest::Sha256);
        h.update(b"abc");
        let line = manifest_line(Digest::Sha256, "vm.ovf", &h.hex());
        assert_eq!(line, "SHA256(vm.ovf)= ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n");
        let mut h = Hasher::new(Digest::Sha1);
        h.update(b"abc");
        assert_eq!(h.hex(), "a9993e364706816aba3e25717850c26c9cd0d89d");
    }
}
