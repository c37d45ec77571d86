// Every sentence the page shows in English. ja.js has the same keys (tests/browser/i18n.test.mjs fails when one
// is missing); index.html names the `page` keys in data-text attributes, app.js uses the rest.
'use strict';

const TEXT_EN = {
  page: {
    title: 'diskbridge — convert disk images for VMware ESXi, Hyper-V and OpenStack in your browser',
    intro: 'Convert a disk image (qcow2, raw, VMDK, VHDX, VHD or OVA) to an OVA or VMDK for VMware ESXi, a VHDX ' +
      'for Hyper-V, a qcow2 for OpenStack or a VHD for Azure or XCP-ng, right here. Nothing is uploaded: the file ' +
      'is read and written on this computer.',
    language: 'Language',
    pickHeading: '1. Pick the disk image',
    pickLabel: 'Disk image (pick its backing file too, if it has one)',
    dropHint: 'or drop the files anywhere on this page',
    backingLabel: 'Backing file',
    loginHeading: '2. First login (optional)',
    loginIntro: 'A distribution\'s cloud image (Debian, Ubuntu, Rocky, openSUSE…) has no password and no SSH key: ' +
      'cloud-init sets up the login at the first boot, from what you give here. An OVA carries it inside; for ' +
      'other targets the result offers a small seed disk to attach as a second disk. Leave these empty for any ' +
      'other image.',
    loginPrivacy: 'What you enter here stays in this page: it is not sent anywhere and not stored (only a hash ' +
      'of the password is written to the seed disk).',
    hostnameLabel: 'Host name',
    hostnameHint: 'Letters, digits and hyphens, for example web-1 (or a full name such as web-1.example.org).',
    sshKeysLabel: 'SSH public keys',
    sshKeysHint: 'Paste one or more public keys, one a line (ssh-ed25519 AAAA… you@host): the contents of a .pub ' +
      'file, never the private key. They go to the image\'s default user (debian, ubuntu, rocky…).',
    sshKeyFileLabel: 'Or pick .pub files (they are added to the keys above)',
    passwordLabel: 'Password for the default user',
    passwordHint: 'It also lets that user log in over SSH with the password.',
    userDataLabel: 'Your own user-data file (optional)',
    userDataHint: 'cloud-init user-data: #cloud-config, a #! script or MIME, at most 64 KiB. Given with the fields ' +
      'above, both are used (yours first).',
    diskSizeLabel: 'Disk size',
    diskSizeUnit: 'Unit',
    loginClear: 'Clear these fields',
    targetHeading: '3. Convert and save',
    esxiPackage: 'For VMware ESXi, write',
    ova: 'OVA (recommended)',
    vmdkOnly: 'VMDK only',
    hypervPackage: 'For Hyper-V, write',
    vhdxFixed: 'a fixed-size VHDX (the whole size is allocated, as Hyper-V\'s "Fixed size")',
    toVmdk: 'VMDK for VMware ESXi',
    toOva: 'OVA for VMware ESXi',
    toVhdx: 'VHDX for Hyper-V',
    toQcow2: 'qcow2 for OpenStack',
    toAzure: 'VHD for Azure',
    toXen: 'VHD for XCP-ng / XenServer',
    advanced: 'Advanced options',
    optionsHelp: 'Options as qemu-img convert -o takes them, comma-separated.',
    vmdkOptions: 'VMDK options',
    vhdxOptions: 'VHDX options',
    vhdxPlaceholder: 'for example block_size=32M',
    qcow2Options: 'qcow2 options',
    qcow2Placeholder: 'for example cluster_size=2M',
    toRaw: 'Raw disk image (.img)',
    emptyHeading: 'Or: an empty disk',
    emptyText: 'A tiny VMDK with nothing in it, as vmdk-convert makes it (for an extra data disk or to test an ' +
      'import).',
    emptyVmdk: 'Empty 64 KiB VMDK',
    progressHeading: 'Progress',
    cancel: 'Cancel',
    saveSeed: 'Save the seed disk',
    verify: 'Verify the saved file',
  },
  bytes: (n) => `${n.toLocaleString('en')} bytes`,
  unknownWithoutBacking: 'known once the backing file is picked',
  none: 'none',
  rows: {
    format: 'Format', virtualSize: 'Virtual size', fileSize: 'File size', clusterSize: 'Cluster size',
    compression: 'Compression type', allocated: 'Allocated data', backing: 'Backing file', warning: 'Warning',
    table: 'Partition table', boot: 'Boots with',
  },
  tables: {gpt: 'GPT', mbr: 'MBR', none: 'none found'},
  boot: {
    bios: 'BIOS', uefi: 'UEFI', hybrid: 'BIOS or UEFI (a hybrid image: it boots either way)',
    none: 'no boot loader found (a data disk?)',
  },
  needsBacking: (names) => `This image is an overlay: its data continues in "${names.join('", "')}". Pick that ` +
    'file too: with the image (matched by its name), or here, where a file of any name is used as it.',
  notePicker: 'You choose where to save. The file is created as soon as you choose it, and choosing an existing ' +
    'file empties it at once; if the conversion fails or is cancelled, it is removed.',
  noteNoFileReads: 'This browser does not let a page opened from a file read the files you pick (its workers ' +
    'get "NotReadableError"), so only the empty VMDK can be made here. Open the page over http(s) instead (' +
    'scripts/start serves it), or use Firefox or Chromium.',
  noteStream: 'This browser has no save dialog, so a VMDK, VHDX, VHD or raw image is streamed into its downloads as ' +
    'it is written: no size limit but the disk, and a cancelled or failed conversion leaves a failed download, ' +
    'never a complete-looking file. A streamed VMDK has its grain tables at its end (the streamOptimized layout ' +
    'of VMware\'s own exports); a streamed dynamic VHDX or VHD reads the disk twice, once to find its empty blocks.',
  noteNotStreamed: 'A qcow2 cannot be streamed: its header and tables come first and are known only at the end.',
  noteOpfs: (can, quota) => (can.stream ? 'So a qcow2' : can.file
    ? 'This browser has no save dialog, and a page opened from a file cannot stream downloads, so the output'
    : 'This browser has no save dialog and the page\'s service worker is not running (a private window?), so ' +
      'the output') + ' is written to the browser\'s own storage for this page first, then offered as a ' +
    `download: it needs that much free space there${quota ? `, at most about ${quota} here` : ''}. For a ` +
    'larger output, use Chromium (or Edge), which writes straight to the file you choose, or the diskbridge ' +
    'command-line tool.',
  noteMemory: (can, limit) => (can.stream
    ? 'This browser gives the page no storage of its own (OPFS), so a qcow2'
    : can.file ? 'A page opened from a file has no storage of its own in this browser and cannot stream ' +
      'downloads, so the output'
      : 'This browser gives this page neither storage of its own nor a running service worker, so the output') +
    ` is assembled in memory and then offered as a download — at most ${limit}. For larger images use ` +
    'Chromium (or Edge), or the diskbridge command-line tool.',
  noOva: (can) => (can.file
    ? 'An OVA needs the browser\'s own storage, which a page opened from a file does not have in this browser'
    : 'An OVA needs the browser\'s own storage (OPFS), which this browser does not give the page') +
    ': its first bytes record the size of the disk inside, known only once the disk is written. So the ESXi ' +
    'button writes the VMDK alone.' + (can.file ? ' For an OVA, open the page over http(s).' : ''),
  ovaStaged: 'An OVA is written to the browser\'s own storage first and then downloaded (its first bytes record ' +
    'the size of the disk inside, known only at the end): it needs as much free space there as the OVA. ' +
    'Choose "VMDK only" to stream without that limit.',
  badUrlNumber: (key) => `The URL's ${key}= must be a whole number below 2^64`,
  starting: 'Starting…',
  cancelling: 'Cancelling…',
  cancelled: 'Cancelled. No file was left behind.',
  cancelledStream: (name) => `Cancelled. The download of ${name} was stopped and marked as failed; if the browser ` +
    'kept what it had received under that name, delete it: it is not a complete image.',
  failedStream: (name) => `The download of ${name} was stopped and marked as failed; if the browser kept what it ` +
    'had received under that name, delete it: it is not a complete image.',
  progress: (done, total, mbps) => `${done} of ${total} — ${mbps} MB/s`,
  phases: {scan: ' (first read: finding the empty blocks)', finish: ' (finishing: tables and checksums)'},
  eta: (left) => `, about ${left} left`,
  seconds: (s) => `${s} s`,
  minutes: (m, s) => `${m} min ${s} s`,
  hours: (h, m) => `${h} h ${m} min`,
  saved: (name, size, seconds, mbps) =>
    `Saved ${name} (${size}) in ${seconds} s${mbps ? `, reading the disk's data at ${mbps} MB/s` : ''}.`,
  streamed: (name, size, seconds, mbps) => `Streamed ${name} (${size}) into the browser's downloads in ${seconds} ` +
    `s${mbps ? `, reading the disk's data at ${mbps} MB/s` : ''}.`,
  verifyPick: (name) => `To verify, pick the downloaded ${name} (the page cannot read the downloads folder itself)`,
  verifying: 'Reading the saved file back and comparing it with the source…',
  identical: (name) => `Verified: ${name} holds exactly the source's disk contents (identical).`,
  differs: (name, offset) => `${name} differs from the source: the first difference is in the sector at byte ` +
    `${offset}.`,
  sizesDiffer: ' The virtual sizes differ; the longer disk ends in zeros.',
  errorKind: (kind) => `Error (${kind}):`,
  errorKinds: {
    io: 'Reading or writing a file failed.', 'not-found': 'A file the image needs was not found.',
    'invalid-format': 'This is not a disk image diskbridge can read.',
    corrupt: 'The image is damaged.', unsupported: 'This image uses a feature diskbridge does not support.',
    'limit-exceeded': 'The image is too large here.', 'invalid-argument': 'A setting is not valid.',
    internal: 'Something went wrong inside diskbridge.', cancelled: 'Cancelled.',
  },
  fileTypes: {vmdk: 'VMDK disk image', vhdx: 'VHDX disk image', qcow2: 'qcow2 disk image', ova: 'OVA package',
    vpc: 'VHD disk image', raw: 'Raw disk image'},
  diskSizeHint: (source) => 'Empty: the same size as the source' + (source ? ` (${source})` : '') + '. Larger: the ' +
    'disk grows, the added space unallocated, and cloud-init grows the root file system into it at the first boot.',
  sizeNotNumber: 'The disk size must be a number above zero (the unit beside it), or empty for the source\'s size.',
  sizeTooSmall: (asked, source) => `The disk size ${asked} is smaller than the source's ${source}: a disk can ` +
    'only be made larger.',
  loginError: {
    hostname: (message) => `This host name cannot be used: ${message}.`,
    sshKeys: (message) => `These are not SSH public keys: ${message}.`,
    password: (message) => `This password cannot be used: ${message}.`,
    userData: (message) => `This user-data file cannot be used: ${message}.`,
  },
  saveSeedNamed: (name) => `Save the seed disk (${name})`,
  seedGuide: {
    vmdk: (name, stem) => `The first login is on a seed disk, ${name}. Upload it beside the disk, import it the ` +
      `same way (vmkfstools -i ${name} -d thin ${stem}-esxi.vmdk) and add ${stem}-esxi.vmdk to the VM as a second ` +
      'hard disk. cloud-init reads it at the first boot (it finds the disk by its label, CIDATA); afterwards it can ' +
      'be removed.',
    vhdx: (name) => `The first login is on a seed disk, ${name}. Attach it to the VM as a second hard disk on its ` +
      'SCSI controller. cloud-init reads it at the first boot (it finds the disk by its label, CIDATA); afterwards ' +
      'it can be removed.',
    qcow2: (name) => `The first login is on a seed disk, ${name}. Attach it to the VM as a second drive (qemu: ` +
      `-drive file=${name},format=qcow2,if=virtio). cloud-init reads it at the first boot (it finds the disk by ` +
      'its label, CIDATA). On OpenStack the key pair chosen at launch usually gives the login instead.',
    xen: (name) => `The first login is on a seed disk, ${name}. Import it too (Import → Disk) and attach it to the ` +
      'VM as a second disk. cloud-init reads it at the first boot (it finds the disk by its label, CIDATA); ' +
      'afterwards it can be removed.',
    raw: (name) => `The first login is on a seed disk, ${name}. Attach it to the VM as a second drive (qemu: ` +
      `-drive file=${name},format=raw,if=virtio). cloud-init reads it at the first boot (it finds the disk by its ` +
      'label, CIDATA).',
  },
  guide: {
    ova: (name) => `To import it: in the vSphere Client (or the ESXi Host Client), choose Deploy OVF Template ` +
      `(Create / Register VM → Deploy a virtual machine from an OVF or OVA file) and pick ${name}.`,
    vmdk: (name, stem) => `A streamOptimized VMDK cannot be attached as it is (ESXi reports "Unsupported or ` +
      `invalid disk type 7"): upload it to a datastore, then import it on the host with ` +
      `vmkfstools -i ${name} -d thin ${stem}-esxi.vmdk and attach ${stem}-esxi.vmdk to the VM.`,
    ovaLogin: (seed) => `The OVA carries the first login as a second disk, ${seed}: cloud-init reads it at the first ` +
      'boot (it finds the disk by its label, CIDATA). Afterwards the disk can be removed from the VM.',
    firmware: (firmware) => `Set the VM's firmware to ${firmware}.`,
    hyperv1: 'In Hyper-V, create a Generation 1 virtual machine with this disk (the image boots with BIOS).',
    hyperv2: 'In Hyper-V, create a Generation 2 virtual machine with this disk (the image boots with UEFI and ' +
      'GPT). For Linux guests, set Secure Boot\'s template to "Microsoft UEFI Certificate Authority" or turn it off.',
    hypervEither: 'In Hyper-V this image works as Generation 1 or Generation 2 (it boots with BIOS and with UEFI). ' +
      'Generation 2 is the modern choice; for Linux guests set Secure Boot\'s template to "Microsoft UEFI ' +
      'Certificate Authority" or turn it off.',
    hypervMbrUefi: 'This image boots only with UEFI but has an MBR partition table: Hyper-V\'s Generation 2 needs ' +
      'GPT and Generation 1 has no UEFI, so it will not boot in Hyper-V as it is.',
    hypervData: 'No boot loader was found: attach this disk to a VM of either generation as a data disk.',
    qcow2: (name, stem) => `To upload it: openstack image create --disk-format qcow2 --container-format bare ` +
      `--file ${name} ${stem}`,
    qcow2Uefi: ' This image boots only with UEFI: add --property hw_firmware_type=uefi.',
    azure: (bytes) => `Azure takes a fixed VHD whose size is a whole number of MiB, as this one is (${bytes} bytes ` +
      'with its 512-byte footer). Upload it as a page blob into a managed disk made for it, make an image of the ' +
      'disk and a VM from the image (replace GROUP, USER and the key):',
    azureLogin: 'The host name, keys and password entered above are not written for Azure: Azure sets the login ' +
      'itself when it creates the VM (--admin-username and --ssh-key-values above).',
    xen: (name) => `To import it into XCP-ng or XenServer: in Xen Orchestra choose Import → Disk, pick ${name} and ` +
      'a storage repository, then attach the disk to a VM as its boot disk (on the host itself: xe vdi-import ' +
      'format=vhd into a new VDI of the same size).',
  },
};
