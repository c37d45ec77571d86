// ページに表示する日本語の文。キーは en.js と同じ（欠けると tests/browser/i18n.test.mjs が失敗する）。
// Terms follow the Japanese how-to this page replaces (仮想ディスク, インポート, OVFテンプレートのデプロイ).
'use strict';

const TEXT_JA = {
  page: {
    title: 'diskbridge — ブラウザーで仮想ディスクを VMware ESXi・Hyper-V・OpenStack 用に変換',
    intro: '仮想ディスクイメージ（qcow2、raw、VMDK、VHDX、VHD、OVA）を、VMware ESXi 用の OVA または VMDK、' +
      'Hyper-V 用の VHDX、OpenStack 用の qcow2 に、このページで変換します。ファイルはアップロードされず、' +
      'このコンピューターの中で読み書きされます。',
    language: '言語',
    pickHeading: '1. 仮想ディスクイメージを選ぶ',
    pickLabel: '仮想ディスクイメージ（バッキングファイルがある場合は、それも一緒に選んでください）',
    dropHint: 'または、このページのどこにでもファイルをドロップしてください',
    backingLabel: 'バッキングファイル',
    targetHeading: '2. 変換して保存する',
    esxiPackage: 'VMware ESXi 用の出力',
    ova: 'OVA（推奨）',
    vmdkOnly: 'VMDK のみ',
    toVmdk: 'VMware ESXi 用 VMDK',
    toOva: 'VMware ESXi 用 OVA',
    toVhdx: 'Hyper-V 用 VHDX',
    toQcow2: 'OpenStack 用 qcow2',
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
  noteStream: 'このブラウザーには保存ダイアログがないため、VMDK・VHDX・raw イメージは書き出しながら' +
    'ダウンロードとして保存します（ストリーミング）。サイズの上限はディスクの空きだけです。変換がキャンセル' +
    'または失敗した場合はダウンロードが失敗として終わり、完成したように見えるファイルは残りません。' +
    'ストリーミングした VMDK はグレインテーブルを末尾に持ちます（VMware のエクスポートと同じ streamOptimized ' +
    'の配置です）。VHDX は空のブロックを見つけるためにディスクを 2 回読みます。',
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
    raw: 'raw ディスクイメージ'},
  guide: {
    ova: (name) => `インポート方法: vSphere Client（または ESXi Host Client）で「OVFテンプレートのデプロイ」` +
      `（仮想マシンの作成/登録 → OVF ファイルまたは OVA ファイルから仮想マシンをデプロイ）を選び、${name} を指定します。`,
    vmdk: (name, stem) => `streamOptimized の VMDK はそのままでは接続できません（ESXi は「Unsupported or invalid ` +
      `disk type 7」と報告します）。データストアにアップロードしてから、ホスト上で ` +
      `vmkfstools -i ${name} -d thin ${stem}-esxi.vmdk でインポートし、${stem}-esxi.vmdk を仮想マシンに接続します。`,
    esxiFirmware: (firmware) => `仮想マシンのファームウェアは ${firmware} にしてください。`,
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
  },
};
