// Words of the console in Chinese and English. The browser's language picks; the switch overrides and is
// remembered in this browser.
const WORDS = {
  en: {
    orders: 'Orders', newOrder: 'New order', analyze: 'Short video', account: 'Account', operator: 'Operator',
    signIn: 'Sign in', signOut: 'Sign out', apiKey: 'API key', signInHint: 'Your key is kept for this browser session only.',
    operatorSignIn: 'Operator sign-in', operatorToken: 'Operator token', operatorHint: 'Made with: yinzi operators create NAME',
    orderNo: 'Order', type: 'Type', status: 'Status', progress: 'Progress', created: 'Created', reason: 'Reason',
    noOrders: 'No orders yet.', source: 'Source', fromUrl: 'URL or share text', fromFile: 'Local file',
    pathKeyHint: 'A media URL, a short-video link, or a whole pasted share text.', create: 'Create order',
    uploading: 'Uploading', resume: 'Resume upload', uploadCut: 'The connection dropped. Resume where it stopped.',
    priority: 'Priority', results: 'Results', downloads: 'Downloads', transcript: 'Transcript',
    waiting: 'Waiting for the order to finish…', balance: 'Balance', points: 'points', ledger: 'Ledger',
    change: 'Change', after: 'Balance after', kind: 'Kind', note: 'Note', when: 'When', keys: 'API keys',
    prefix: 'Prefix', label: 'Label', state: 'State', active: 'active', revoked: 'revoked', revoke: 'Revoke',
    newKey: 'New key', keyShownOnce: 'Copy this key now; it is shown only once:', webhookSecret: 'Webhook secret',
    show: 'Show', rotate: 'Rotate', shareText: 'Share link or text', analyzeBtn: 'Analyze', title: 'Title',
    author: 'Author', video: 'Video', music: 'Music', images: 'Images', users: 'Users', name: 'Name',
    grant: 'Grant points', grantHint: 'Negative numbers take points back.', user: 'User', queue: 'Queue',
    engines: 'Engines and models', failures: 'Recent failures', count: 'Count', examples: 'Examples',
    modelDir: 'Model directory', installed: 'Installed models', canRun: 'can run', cannotRun: 'cannot run',
    rateLimit: 'Rate limit', setLimit: 'Set limit', defaultLimit: 'default', none: 'none', createKey: 'Create key',
    running: 'running', waitingState: 'waiting', nothingFailed: 'No failures in the last week.', docs: 'API docs',
    cost: 'Cost', seekHint: 'Click the waveform to seek; click a line to jump there.',
    signedInAs: 'Signed in as', refresh: 'Refresh',
  },
  zh: {
    orders: '订单', newOrder: '新建订单', analyze: '短视频解析', account: '个人中心', operator: '运营后台',
    signIn: '登录', signOut: '退出', apiKey: 'API Key', signInHint: 'Key 只保存在本次浏览器会话中。',
    operatorSignIn: '运营登录', operatorToken: '运营令牌', operatorHint: '用命令创建：yinzi operators create NAME',
    orderNo: '订单号', type: '类型', status: '状态', progress: '进度', created: '创建时间', reason: '原因',
    noOrders: '还没有订单。', source: '来源', fromUrl: '链接或分享文本', fromFile: '本地文件',
    pathKeyHint: '媒体链接、短视频链接，或整段粘贴的分享文本。', create: '创建订单',
    uploading: '上传中', resume: '继续上传', uploadCut: '连接中断，可从中断处继续上传。',
    priority: '优先级', results: '结果', downloads: '下载', transcript: '文字稿',
    waiting: '等待订单完成…', balance: '余额', points: '点', ledger: '账单流水',
    change: '变动', after: '变动后余额', kind: '类别', note: '备注', when: '时间', keys: 'API Key 列表',
    prefix: '前缀', label: '标签', state: '状态', active: '有效', revoked: '已吊销', revoke: '吊销',
    newKey: '新建 Key', keyShownOnce: '请立即复制，此 Key 只显示一次：', webhookSecret: 'Webhook 密钥',
    show: '显示', rotate: '更换', shareText: '分享链接或文本', analyzeBtn: '解析', title: '标题',
    author: '作者', video: '视频', music: '音乐', images: '图片', users: '用户', name: '名称',
    grant: '发放点数', grantHint: '填负数即扣回点数。', user: '用户', queue: '队列',
    engines: '引擎与模型', failures: '近期失败', count: '数量', examples: '示例',
    modelDir: '模型目录', installed: '已安装模型', canRun: '可运行', cannotRun: '不可运行',
    rateLimit: '限流', setLimit: '设置限流', defaultLimit: '默认', none: '无', createKey: '创建 Key',
    running: '处理中', waitingState: '排队中', nothingFailed: '最近一周没有失败。', docs: 'API 文档',
    cost: '费用', seekHint: '点击波形可跳转；点击文字行可跳到该处。',
    signedInAs: '当前用户', refresh: '刷新',
  },
};
const STATUS = {
  zh: { pending: '排队中', processing: '处理中', finish: '已完成', failed: '失败', timeout: '超时' },
  en: { pending: 'pending', processing: 'processing', finish: 'finished', failed: 'failed', timeout: 'timed out' },
};
const TYPES = {
  zh: { 'track-separation': '人声伴奏分离', 'extract-voice': '提取人声', 'extract-music': '提取伴奏', 'extract-text': '语音转文字' },
  en: { 'track-separation': 'Vocals + accompaniment', 'extract-voice': 'Extract vocals', 'extract-music': 'Extract accompaniment', 'extract-text': 'Speech to text' },
};

export function pickLang() {
  const chosen = localStorage.getItem('yinzi.lang');
  if (chosen === 'zh' || chosen === 'en') return chosen;
  return (navigator.languages || [navigator.language]).some((l) => /^zh\b/i.test(l)) ? 'zh' : 'en';
}

let current = pickLang();
export const lang = () => current;
export function setLang(value, remember = true) {
  current = value === 'zh' ? 'zh' : 'en';
  if (remember) localStorage.setItem('yinzi.lang', current);
  document.documentElement.lang = current === 'zh' ? 'zh-CN' : 'en';
}
export const t = (key) => WORDS[current][key] ?? WORDS.en[key] ?? key;
export const statusName = (s) => STATUS[current][s] ?? s;
export const typeName = (s) => TYPES[current][s] ?? s;
export const ORDER_TYPES = Object.keys(TYPES.en);
