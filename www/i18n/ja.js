// ページに表示する日本語の文。キーは en.js と同じ（欠けると tests/browser/i18n.test.mjs が失敗する）。
// Terms follow the Japanese how-to this page replaces (仮想ディスク, インポート, OVFテンプレートのデプロイ).
'use strict';

const TEXT_JA = {
  page: {
    title: 'diskbridge — ブラウザーで仮想ディスクを VMware ESXi・Hyper-V・OpenStack 用に変換',
    intro: '仮想ディスクイメージ（qcow2、raw、VMDK、VHDX、VHD、OVA）を、VMware ESXi 用の OVA または VMDK、' +
      'Hyper-V 用の VHDX、OpenStack 用の qcow2、Azure・XCP-ng 用の VHD に、このページで変換します。' +
      'ファイルはアップロードされず、このコンピューターの中で読み書きされます。',
    language: '言語',
    pickHeading: '1. 仮想ディスクイメージを選ぶ',
    pickLabel: '仮想ディスクイメージ（バッキングファイルがある場合は、それも一緒に選んでください）',
    dropHint: 'または、このページのどこにでもファイルをドロップしてください',
    backingLabel: 'バッキングファイル',
    loginHeading: '2. 初回ログイン（任意）',
    loginIntro: 'ディストリビューションが配布するクラウドイメージ（Debian・Ubuntu・Rocky・openSUSE など）には' +
      'パスワードも SSH 鍵もありません。ここで入力した内容から、初回起動時に cloud-init がログインを設定します。' +
      'OVA ではその中に入り、それ以外の出力先では、2 台目のディスクとして接続する小さなシードディスクを変換後に' +
      '保存できます。クラウドイメージ以外では空のままにしてください。',
    loginPrivacy: 'ここで入力した内容はこのページの中だけで使われ、どこにも送信・保存されません（シードディスクに' +
      '書き込まれるのはパスワードのハッシュだけです）。',
    hostnameLabel: 'ホスト名',
    hostnameHint: '英数字とハイフン。例: web-1（web-1.example.org のような完全な名前も使えます）',
    sshKeysLabel: 'SSH 公開鍵',
    sshKeysHint: '公開鍵を 1 行に 1 つずつ貼り付けてください（ssh-ed25519 AAAA… you@host）。.pub ファイルの中身で、' +
      '秘密鍵ではありません。イメージの既定のユーザー（debian・ubuntu・rocky など）に設定されます。',
    sshKeyFileLabel: 'または .pub ファイルを選ぶ（上の公開鍵に追加されます）',
    passwordLabel: '既定のユーザーのパスワード',
    passwordHint: 'このユーザーは SSH でもパスワードでログインできるようになります。',
    userDataLabel: '独自のユーザーデータファイル（任意）',
    userDataHint: 'cloud-init のユーザーデータ（#cloud-config、#! で始まるスクリプト、MIME。64 KiB まで）。上の' +
      '項目と一緒に指定した場合は両方を使います（このファイルが先）。',
    diskSizeLabel: 'ディスクサイズ',
    diskSizeUnit: '単位',
    loginClear: 'これらの入力を消去',
    targetHeading: '3. 変換して保存する',
    esxiPackage: 'VMware ESXi 用の出力',
    ova: 'OVA（推奨）',
    vmdkOnly: 'VMDK のみ',
    hypervPackage: 'Hyper-V 用の出力',
    vhdxFixed: '容量固定の VHDX（Hyper-V の「固定サイズ」と同じく、全容量を割り当てます）',
    toVmdk: 'VMware ESXi 用 VMDK',
    toOva: 'VMware ESXi 用 OVA',
    toVhdx: 'Hyper-V 用 VHDX',
    toQcow2: 'OpenStack 用 qcow2',
    toAzure: 'Azure 用 VHD',
    toXen: 'XCP-ng / XenServer 用 VHD',
    advanced: '詳細オプション',
    optionsHelp: 'qemu-img convert -o と同じ形式のオプションをカンマ区切りで指定します。',
    vmdkOptions: 'VMDK のオプション',
    vhdxOptions: 'VHDX のオプション',
    vhdxPlaceholder: '例: block_size=32M',
    qcow2Options: 'qcow2 のオプション',
    qcow2Placeholder: '例: cluster_size=2M',
    toRaw: 'raw ディスクイメージ（.img）',
    emptyHeading: 'または: 空の仮想ディスク',
    emptyText: 'vmdk-convert と同じ構造の、中身が空の小さな VMDK です（追加のデータディスクや、インポートの' +
      '確認に）。',
    emptyVmdk: '空の 64 KiB VMDK',
    progressHeading: '進捗',
    cancel: 'キャンセル',
    saveSeed: 'シードディスクを保存',
    verify: '保存したファイルを検証',
  },
  bytes: (n) => `${n.toLocaleString('ja')} バイト`,
  unknownWithoutBacking: 'バッキングファイルを選ぶと表示されます',
  none: 'なし',
  rows: {
    format: '形式', virtualSize: '仮想サイズ', fileSize: 'ファイルサイズ', clusterSize: 'クラスターサイズ',
    compression: '圧縮方式', allocated: '割り当て済みデータ', backing: 'バッキングファイル', warning: '警告',
    table: 'パーティションテーブル', boot: '起動方式',
  },
  tables: {gpt: 'GPT', mbr: 'MBR', none: '見つかりません'},
  boot: {
    bios: 'BIOS', uefi: 'UEFI', hybrid: 'BIOS または UEFI（ハイブリッドイメージ: どちらでも起動します）',
    none: 'ブートローダーが見つかりません（データディスク？）',
  },
  needsBacking: (names) => `このイメージはオーバーレイで、データの続きは「${names.join('」「')}」にあります。` +
    'そのファイルも選んでください。イメージと一緒に選ぶ場合はファイル名で照合し、ここで選んだファイルは名前に' +
    'かかわらずそのファイルとして使います。',
  notePicker: '保存先はあなたが選びます。選んだ時点でファイルが作られ、既存のファイルを選ぶとすぐに空になります。' +
    '変換が失敗またはキャンセルされた場合、そのファイルは削除されます。',
  noteNoFileReads: 'このブラウザーでは、ファイルとして開いたページは選んだファイルを読めません（ワーカーで ' +
    '"NotReadableError" になります）。ここで作れるのは空の VMDK だけです。http(s) でページを開くか' +
    '（scripts/start で配信できます）、Firefox か Chromium を使ってください。',
  noteStream: 'このブラウザーには保存ダイアログがないため、VMDK・VHDX・VHD・raw イメージは書き出しながら' +
    'ダウンロードとして保存します（ストリーミング）。サイズの上限はディスクの空きだけです。変換がキャンセル' +
    'または失敗した場合はダウンロードが失敗として終わり、完成したように見えるファイルは残りません。' +
    'ストリーミングした VMDK はグレインテーブルを末尾に持ちます（VMware のエクスポートと同じ streamOptimized ' +
    'の配置です）。容量可変の VHDX と VHD は、空のブロックを見つけるためにディスクを 2 回読みます。',
  noteNotStreamed: 'qcow2 はストリーミングできません。ヘッダーとテーブルが先頭にあり、その内容は最後まで' +
    '書き終えないと決まらないためです。',
  noteOpfs: (can, quota) => (can.stream ? 'そのため qcow2 は'
    : can.file ? 'このブラウザーには保存ダイアログがなく、ファイルとして開いたページではダウンロードを' +
      'ストリーミングできないため、出力は'
      : 'このブラウザーには保存ダイアログがなく、ページの Service Worker も動いていない（プライベート' +
        'ウィンドウ？）ため、出力は') +
    'いったんこのページ用のブラウザー内の領域に書き込まれ、その後ダウンロードとして渡されます。そこに同じだけの' +
    `空きが必要です${quota ? `（ここでは最大約 ${quota}）` : ''}。これより大きい出力には、選んだファイルに直接` +
    '書き込める Chromium（または Edge）か、diskbridge のコマンドラインツールを使ってください。',
  noteMemory: (can, limit) => (can.stream
    ? 'このブラウザーはページにブラウザー内の領域（OPFS）を提供しないため、qcow2 は'
    : can.file ? 'このブラウザーでは、ファイルとして開いたページにはブラウザー内の領域がなく、ダウンロードも' +
      'ストリーミングできないため、出力は'
      : 'このブラウザーはこのページにブラウザー内の領域も動作中の Service Worker も提供しないため、出力は') +
    `メモリー上で組み立ててからダウンロードとして渡します（最大 ${limit}）。これより大きいイメージには ` +
    'Chromium（または Edge）か、diskbridge のコマンドラインツールを使ってください。',
  noOva: (can) => (can.file
    ? 'OVA の作成にはブラウザー内の領域が必要ですが、このブラウザーではファイルとして開いたページにはありません'
    : 'OVA の作成にはブラウザー内の領域（OPFS）が必要ですが、このブラウザーはページに提供しません') +
    '（OVA の先頭には中のディスクのサイズが記録され、それはディスクを書き終えるまで分かりません）。そのため ' +
    'ESXi 用のボタンは VMDK だけを書き出します。' +
    (can.file ? 'OVA が必要なら http(s) でページを開いてください。' : ''),
  ovaStaged: 'OVA はいったんブラウザー内の領域に書き込んでからダウンロードします（OVA の先頭には中のディスクの' +
    'サイズが記録され、それは最後まで分かりません）。そのため OVA と同じだけの空きがそこに必要です。' +
    'この上限なしにストリーミングするには「VMDK のみ」を選んでください。',
  badUrlNumber: (key) => `URL の ${key}= は 2^64 未満の整数でなければなりません`,
  starting: '開始しています…',
  cancelling: 'キャンセルしています…',
  cancelled: 'キャンセルしました。ファイルは残っていません。',
  cancelledStream: (name) => `キャンセルしました。${name} のダウンロードは中止され、失敗として扱われます。` +
    'ブラウザーが受け取った分をその名前で残した場合は削除してください（完全なイメージではありません）。',
  failedStream: (name) => `${name} のダウンロードは中止され、失敗として扱われます。ブラウザーが受け取った分を` +
    'その名前で残した場合は削除してください（完全なイメージではありません）。',
  progress: (done, total, mbps) => `${done} / ${total} — ${mbps} MB/s`,
  phases: {scan: '（1 回目の読み取り: 空のブロックを探しています）', finish: '（仕上げ: テーブルとチェックサム）'},
  eta: (left) => `、残り約 ${left}`,
  seconds: (s) => `${s} 秒`,
  minutes: (m, s) => `${m} 分 ${s} 秒`,
  hours: (h, m) => `${h} 時間 ${m} 分`,
  saved: (name, size, seconds, mbps) => `${name}（${size}）を ${seconds} 秒で保存しました` +
    `${mbps ? `（ディスクのデータを ${mbps} MB/s で読み取り）` : ''}。`,
  streamed: (name, size, seconds, mbps) => `${name}（${size}）を ${seconds} 秒でブラウザーのダウンロードに` +
    `書き出しました${mbps ? `（ディスクのデータを ${mbps} MB/s で読み取り）` : ''}。`,
  verifyPick: (name) => `検証するには、ダウンロードした ${name} を選んでください（ページからはダウンロード` +
    'フォルダーを読めません）',
  verifying: '保存したファイルを読み戻して、変換元と比較しています…',
  identical: (name) => `検証しました: ${name} の内容は変換元の仮想ディスクと一致しています（identical）。`,
  differs: (name, offset) => `${name} は変換元と異なります。最初の相違は ${offset} バイト目からのセクターにあります。`,
  sizesDiffer: ' 仮想サイズが異なります（長い方の末尾はゼロです）。',
  errorKind: (kind) => `エラー（${kind}）:`,
  errorKinds: {
    io: 'ファイルの読み書きに失敗しました。', 'not-found': 'イメージが必要とするファイルが見つかりません。',
    'invalid-format': 'diskbridge が読める仮想ディスクイメージではありません。',
    corrupt: 'イメージが壊れています。', unsupported: 'diskbridge が対応していない機能を使ったイメージです。',
    'limit-exceeded': 'この環境で扱うにはイメージが大きすぎます。', 'invalid-argument': '設定が正しくありません。',
    internal: 'diskbridge の内部でエラーが発生しました。', cancelled: 'キャンセルしました。',
  },
  fileTypes: {vmdk: 'VMDK 仮想ディスク', vhdx: 'VHDX 仮想ディスク', qcow2: 'qcow2 仮想ディスク', ova: 'OVA パッケージ',
    vpc: 'VHD 仮想ディスク', raw: 'raw ディスクイメージ'},
  diskSizeHint: (source) => '空欄の場合は変換元と同じサイズ' + (source ? `（${source}）` : '') + 'です。大きくすると、' +
    '追加した領域は未割り当てのままで、初回起動時に cloud-init がルートファイルシステムを広げます。',
  sizeNotNumber: 'ディスクサイズは 0 より大きい数値で指定してください（単位は右で選びます）。変換元と同じサイズにする' +
    '場合は空欄にします。',
  sizeTooSmall: (asked, source) => `ディスクサイズ ${asked} は変換元の ${source} より小さくなっています。` +
    'ディスクは大きくすることしかできません。',
  loginError: {
    hostname: (message) => `このホスト名は使えません: ${message}`,
    sshKeys: (message) => `SSH 公開鍵として読めません: ${message}`,
    password: (message) => `このパスワードは使えません: ${message}`,
    userData: (message) => `このユーザーデータファイルは使えません: ${message}`,
  },
  saveSeedNamed: (name) => `シードディスクを保存（${name}）`,
  seedGuide: {
    vmdk: (name, stem) => `初回ログインの設定はシードディスク ${name} に入っています。ディスクと一緒にアップロード` +
      `して同じ方法でインポートし（vmkfstools -i ${name} -d thin ${stem}-esxi.vmdk）、${stem}-esxi.vmdk を仮想マシンの` +
      '2 台目のハードディスクとして追加してください。cloud-init は初回起動時にこれを読みます（CIDATA というラベルで' +
      '見つけます）。その後は外してかまいません。',
    vhdx: (name) => `初回ログインの設定はシードディスク ${name} に入っています。仮想マシンの SCSI コントローラーに` +
      '2 台目のハードディスクとして接続してください。cloud-init は初回起動時にこれを読みます（CIDATA というラベルで' +
      '見つけます）。その後は外してかまいません。',
    qcow2: (name) => `初回ログインの設定はシードディスク ${name} に入っています。仮想マシンの 2 台目のドライブとして` +
      `接続してください（qemu: -drive file=${name},format=qcow2,if=virtio）。cloud-init は初回起動時にこれを読みます` +
      '（CIDATA というラベルで見つけます）。OpenStack では、通常は起動時に選ぶキーペアでログインできます。',
    xen: (name) => `初回ログインの設定はシードディスク ${name} に入っています。これもインポートし（Import → Disk）、` +
      '仮想マシンの 2 台目のディスクとして接続してください。cloud-init は初回起動時にこれを読みます（CIDATA という' +
      'ラベルで見つけます）。その後は外してかまいません。',
    raw: (name) => `初回ログインの設定はシードディスク ${name} に入っています。仮想マシンの 2 台目のドライブとして` +
      `接続してください（qemu: -drive file=${name},format=raw,if=virtio）。cloud-init は初回起動時にこれを読みます` +
      '（CIDATA というラベルで見つけます）。',
  },
  guide: {
    ova: (name) => `インポート方法: vSphere Client（または ESXi Host Client）で「OVFテンプレートのデプロイ」` +
      `（仮想マシンの作成/登録 → OVF ファイルまたは OVA ファイルから仮想マシンをデプロイ）を選び、${name} を指定します。`,
    vmdk: (name, stem) => `streamOptimized の VMDK はそのままでは接続できません（ESXi は「Unsupported or invalid ` +
      `disk type 7」と報告します）。データストアにアップロードしてから、ホスト上で ` +
      `vmkfstools -i ${name} -d thin ${stem}-esxi.vmdk でインポートし、${stem}-esxi.vmdk を仮想マシンに接続します。`,
    ovaLogin: (seed) => `この OVA には初回ログインの設定が 2 台目のディスク ${seed} として入っています。cloud-init は` +
      '初回起動時にこれを読みます（CIDATA というラベルで見つけます）。その後は仮想マシンから外してかまいません。',
    firmware: (firmware) => `仮想マシンのファームウェアは ${firmware} にしてください。`,
    hyperv1: 'Hyper-V では、この仮想ディスクで第 1 世代の仮想マシンを作成してください（BIOS で起動するイメージです）。',
    hyperv2: 'Hyper-V では、この仮想ディスクで第 2 世代の仮想マシンを作成してください（UEFI と GPT で起動する' +
      'イメージです）。Linux ゲストでは、セキュアブートのテンプレートを「Microsoft UEFI Certificate Authority」に' +
      'するか、セキュアブートを無効にしてください。',
    hypervEither: 'Hyper-V では第 1 世代・第 2 世代のどちらでも動作します（BIOS でも UEFI でも起動します）。' +
      '新しく作るなら第 2 世代を推奨します。Linux ゲストでは、セキュアブートのテンプレートを「Microsoft UEFI ' +
      'Certificate Authority」にするか、セキュアブートを無効にしてください。',
    hypervMbrUefi: 'このイメージは UEFI でしか起動せず、パーティションテーブルが MBR です。Hyper-V の第 2 世代は GPT ' +
      'が必要で、第 1 世代には UEFI がないため、このままでは Hyper-V で起動しません。',
    hypervData: 'ブートローダーが見つかりません。どちらの世代の仮想マシンにも、データディスクとして接続できます。',
    qcow2: (name, stem) => `アップロード方法: openstack image create --disk-format qcow2 --container-format bare ` +
      `--file ${name} ${stem}`,
    qcow2Uefi: ' このイメージは UEFI でしか起動しないため、--property hw_firmware_type=uefi を付けてください。',
    azure: (bytes) => 'Azure が受け付けるのは、サイズが 1 MiB の倍数の容量固定 VHD で、このファイルはその条件を満たして' +
      `います（512 バイトのフッターを含めて ${bytes} バイト）。アップロード用に作成したマネージドディスクにページ ` +
      'BLOB としてアップロードし、そのディスクからイメージを、イメージから仮想マシンを作成します（GROUP、USER、' +
      '鍵は置き換えてください）:',
    azureLogin: '上で入力したホスト名・鍵・パスワードは Azure 用には書き込みません。Azure は仮想マシンの作成時に' +
      '自分でログインを設定します（上の --admin-username と --ssh-key-values）。',
    xen: (name) => `XCP-ng / XenServer へのインポート方法: Xen Orchestra で Import → Disk を選び、${name} とストレージ` +
      'リポジトリを指定してから、そのディスクを仮想マシンの起動ディスクとして接続します（ホスト上では、同じサイズの' +
      '新しい VDI に xe vdi-import format=vhd で取り込めます）。',
  },
};
