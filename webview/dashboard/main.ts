// The dashboard: the model, the jobs (phase progress, loss curves, QA samples, evaluation) and
// the adapters (stale marks). State comes from the extension; the webview only renders.
import type { DashboardState, JobView, ToDashboard, FromDashboard } from '../../src/protocol/webview';
import type { JobEvent } from '../../src/protocol';
import { applyJobEvent } from '../../src/protocol/jobs';
import { h, s, pct, vscode } from '../shared/dom';
import { morphChildren } from '../shared/morph';
import { t } from '../shared/l10n';

/** "2 h 10 min", "12 min", "40 s" (as the CLI says it). */
function duration(sec: number): string {
  if (sec < 90) return t('{0} s', Math.max(1, Math.round(sec)));
  const min = Math.round(sec / 60);
  if (min < 60) return t('{0} min', min);
  return t('{0} h {1} min', Math.floor(min / 60), min % 60);
}

/** The estimate made before the questions phase, and a warning with what to change when it is hours. */
function estimateView(e: NonNullable<JobView['estimate']>): HTMLElement {
  const parts = [
    t('questions {0}', duration(e.seconds.questions)),
    t('answers {0}', duration(e.seconds.answers)),
    t('training {0}', duration(e.seconds.train)),
    t('evaluation {0}', duration(e.seconds.evaluate)),
  ].join(', ');
  return h(
    'div',
    {},
    h('p', { class: 'muted' }, t('Estimate: about {0} ({1})', duration(e.totalSec), parts)),
    e.long
      ? h(
          'p',
          { class: 'stale', role: 'alert' },
          t('This run will take about {0}. To shorten it: {1}.', duration(e.totalSec), e.suggestions.join('; ')),
        )
      : null,
  );
}

let state: DashboardState = (vscode.getState() as DashboardState | undefined) ?? { jobs: [], adapters: [] };
const app = document.getElementById('app')!;
const send = (m: FromDashboard) => vscode.postMessage(m);
const PHASES = ['ingest', 'questions', 'answers', 'train', 'evaluate'];

/** Exponential moving average (TensorBoard-style, debiased), to see the trend through the noise. */
export function smooth(values: number[], weight = 0.8): number[] {
  let m = 0;
  return values.map((v, i) => {
    m = weight * m + (1 - weight) * v;
    return m / (1 - weight ** (i + 1));
  });
}

function lossChart(job: JobView): SVGElement {
  // Drawn at the card's own width, so the text stays 11 px in a 400 px editor as in a wide one.
  const W = Math.max(300, Math.min(760, (app.clientWidth || 560) - 40)),
    H = 200,
    L = 48,
    B = 34,
    T = 8,
    R = 12;
  const pts = job.loss;
  const val = job.validation;
  const sm = smooth(pts.map((p) => p.loss));
  const all = [...pts.map((p) => p.loss), ...val.map((p) => p.loss)];
  const maxStep = Math.max(1, job.totalSteps ?? 0, ...pts.map((p) => p.step));
  const hi = all.length ? Math.max(...all) : 1;
  const lo = all.length ? Math.min(0, ...all) : 0;
  const x = (st: number) => L + ((W - L - R) * st) / maxStep;
  const y = (v: number) => T + (H - T - B) * (1 - (v - lo) / (hi - lo || 1));
  const last = pts.at(-1);
  const svg = s('svg', {
    viewBox: `0 0 ${W} ${H}`,
    width: W,
    height: H,
    role: 'img',
    'aria-label': last
      ? t(
          'loss curve, {0} steps, last step {1}: loss {2}, smoothed {3}',
          pts.length,
          last.step,
          last.loss.toFixed(3),
          sm.at(-1)!.toFixed(3),
        )
      : t('loss curve, {0} steps', pts.length),
    class: 'loss-chart',
  });
  for (let i = 0; i <= 4; i++) {
    const v = lo + ((hi - lo) * i) / 4;
    svg.append(
      s('line', { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: 'var(--vscode-panel-border)', 'stroke-width': 1 }),
    );
    svg.append(s('text', { x: L - 4, y: y(v) + 4, 'text-anchor': 'end' }, v.toFixed(2)));
  }
  const ticks = Math.min(5, maxStep);
  for (let i = 0; i <= ticks; i++) {
    const st = Math.round((maxStep * i) / ticks);
    svg.append(
      s(
        'text',
        { x: x(st), y: H - B + 14, 'text-anchor': i === 0 ? 'start' : i === ticks ? 'end' : 'middle' },
        String(st),
      ),
    );
  }
  svg.append(s('text', { x: L + (W - L - R) / 2, y: H - 4, 'text-anchor': 'middle', class: 'axis-title' }, t('step')));
  svg.append(
    s(
      'text',
      {
        x: 12,
        y: T + (H - T - B) / 2,
        'text-anchor': 'middle',
        transform: `rotate(-90 12 ${T + (H - T - B) / 2})`,
        class: 'axis-title',
      },
      t('loss'),
    ),
  );
  const line = (xs: { step: number }[], ys: number[]) =>
    xs.map((p, k) => `${x(p.step).toFixed(1)},${y(ys[k]!).toFixed(1)}`).join(' ');
  if (pts.length > 1) {
    svg.append(
      s('polyline', {
        points: line(
          pts,
          pts.map((p) => p.loss),
        ),
        fill: 'none',
        stroke: 'var(--vscode-charts-blue)',
        'stroke-width': 1,
        'stroke-opacity': 0.35,
        class: 'train-line',
      }),
    );
    svg.append(
      s('polyline', {
        points: line(pts, sm),
        fill: 'none',
        stroke: 'var(--vscode-charts-blue)',
        'stroke-width': 2,
        class: 'smooth-line',
      }),
    );
  }
  if (val.length) {
    svg.append(
      s('polyline', {
        points: line(
          val,
          val.map((p) => p.loss),
        ),
        fill: 'none',
        stroke: 'var(--vscode-charts-orange)',
        'stroke-width': 1.5,
        'stroke-dasharray': '4 3',
      }),
    );
    for (const p of val)
      svg.append(
        s(
          'circle',
          { cx: x(p.step), cy: y(p.loss), r: 3.5, fill: 'var(--vscode-charts-orange)' },
          s('title', {}, t('step {0}: held-out loss {1}', p.step, p.loss.toFixed(4))),
        ),
      );
  }
  // Hover targets: one band per slice of steps, its tooltip the values there.
  const bands = Math.min(pts.length, 80);
  for (let b = 0; b < bands; b++) {
    const k = Math.min(pts.length - 1, Math.round(((b + 0.5) * pts.length) / bands));
    const p = pts[k]!;
    const x0 = L + ((W - L - R) * b) / bands;
    svg.append(
      s(
        'rect',
        { x: x0, y: T, width: (W - L - R) / bands, height: H - T - B, fill: 'transparent', class: 'hover-band' },
        s('title', {}, t('step {0}: loss {1}, smoothed {2}', p.step, p.loss.toFixed(4), sm[k]!.toFixed(4))),
      ),
    );
  }
  return svg;
}

function lossLegend(job: JobView): HTMLElement {
  return h(
    'div',
    { class: 'row legend muted' },
    // Each swatch stays with its words when the legend wraps in a narrow editor.
    h(
      'span',
      { class: 'nowrap' },
      h('span', { class: 'swatch train' }),
      ` ${t('training loss (smoothed; raw faint)')}`,
    ),
    job.validation.length
      ? h('span', { class: 'nowrap' }, h('span', { class: 'swatch val' }), ` ${t('held-out loss')}`)
      : null,
  );
}

function jobCard(job: JobView, latest: boolean): HTMLElement {
  const i = PHASES.indexOf(job.phase ?? '');
  const running = job.state === 'running' || job.state === 'restarting';
  const p = job.phaseProgress;
  const frac = p && p.total ? p.done / p.total : 0;
  const stateText = {
    running: t('running'),
    restarting: t('restarting the worker…'),
    done: t('done'),
    failed: t('failed'),
    cancelled: t('cancelled (resumable)'),
  }[job.state];
  const card = h(
    'section',
    {
      class: 'card job',
      'data-key': job.jobId,
      tabindex: '-1',
      'data-state': job.state,
      'aria-label': t('job {0}', job.name),
    },
    h(
      'div',
      { class: 'row' },
      h('strong', {}, job.name),
      h('span', { class: 'muted' }, ` ${stateText}${job.runId ? ` · ${t('run {0}', job.runId)}` : ''}`),
      running
        ? h(
            'vscode-button',
            { appearance: 'secondary', onclick: () => send({ type: 'command', command: 'cancel' }) },
            t('Cancel'),
          )
        : null,
    ),
    h(
      'ol',
      { class: 'phases', 'aria-label': t('phases') },
      ...PHASES.map((ph, k) => {
        // Not colour alone: a mark and the state in words for screen readers.
        const st = job.state === 'done' || k < i ? 'done' : k === i && running ? 'now' : 'todo';
        return h(
          'li',
          {
            class: `phase ${st === 'todo' ? '' : st}`,
            'aria-current': st === 'now' ? 'step' : false,
            title: `${ph}: ${st === 'done' ? t('done') : st === 'now' ? t('in progress') : t('to do')}`,
          },
          st === 'done' ? '✓ ' : st === 'now' ? '▶ ' : '○ ',
          ph,
        );
      }),
    ),
    running && p
      ? h(
          'div',
          { class: 'row' },
          h(
            'div',
            {
              class: 'barbox',
              role: 'progressbar',
              'aria-valuenow': String(Math.round(100 * frac)),
              'aria-valuemin': '0',
              'aria-valuemax': '100',
            },
            h('div', { class: 'bar', style: `width:${(100 * frac).toFixed(1)}%` }),
          ),
          h(
            'span',
            { class: 'muted' },
            `${job.phase} ${p.done}/${p.total}${job.etaSec && Number.isFinite(job.etaSec) ? ` · ${t('{0} s left', Math.round(job.etaSec))}` : ''}`,
          ),
        )
      : null,
    job.error ? h('p', { class: 'err' }, job.error) : null,
    job.estimate && running ? estimateView(job.estimate) : null,
  );
  if (!latest && !running) return card;
  if (job.loss.length || job.validation.length) {
    card.append(h('h2', {}, t('Loss')), lossLegend(job), lossChart(job));
    const last = job.loss.at(-1);
    if (last)
      card.append(
        h(
          'p',
          { class: 'muted' },
          `${t('step {0}', `${last.step}${job.totalSteps ? `/${job.totalSteps}` : ''}`)} · ${t('loss {0}', last.loss.toFixed(4))}${job.lr !== undefined ? ` · ${t('lr {0}', job.lr.toExponential(2))}` : ''}${job.tokensPerSec ? ` · ${t('{0} tokens/s', Math.round(job.tokensPerSec))}` : ''}`,
        ),
      );
  }
  if (job.eval) {
    const e = job.eval.summary;
    card.append(
      h('h2', {}, e.n === 1 ? t('Evaluation on 1 held-out question') : t('Evaluation on {0} held-out questions', e.n)),
      h(
        'table',
        { class: 'eval-table' },
        h('caption', {}, t('Held-out answers scored against the reference')),
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            h('th', { scope: 'col' }, t('model')),
            h('th', { scope: 'col' }, t('exact')),
            h('th', { scope: 'col' }, t('contains')),
            h('th', { scope: 'col' }, t('token F1')),
          ),
        ),
        h(
          'tbody',
          {},
          ...(
            [
              [t('base model (no docs)'), e.base],
              [t('teacher (docs in prompt)'), e.teacher],
              [t('student (adapter, no docs)'), e.student],
            ] as const
          ).map(([name, m]) =>
            h(
              'tr',
              {},
              h('th', { scope: 'row' }, name),
              h('td', { class: 'num' }, pct(m.exact)),
              h('td', { class: 'num' }, pct(m.contains)),
              h('td', { class: 'num' }, pct(m.f1)),
            ),
          ),
        ),
      ),
    );
    card.append(
      h(
        'details',
        { class: 'answers' },
        h('summary', {}, t('Answers side by side')),
        h(
          'table',
          {},
          h('caption', {}, t('Held-out questions: the answers of each model')),
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              h('th', { scope: 'col' }, t('question')),
              h('th', { scope: 'col' }, t('base')),
              h('th', { scope: 'col' }, t('student')),
              h('th', { scope: 'col' }, t('teacher')),
            ),
          ),
          h(
            'tbody',
            {},
            ...job.eval.rows
              .slice(0, 40)
              .map((r) =>
                h(
                  'tr',
                  {},
                  h('td', {}, r.question),
                  h('td', {}, r.base),
                  h('td', {}, r.student),
                  h('td', {}, r.teacher),
                ),
              ),
          ),
        ),
      ),
    );
  }
  if (job.samples.length) {
    card.append(
      h('h2', {}, t('Questions and teacher answers ({0})', job.samples.length)),
      h(
        'table',
        { class: 'samples' },
        h('caption', {}, t('The newest questions the teacher wrote, with its answers')),
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            h('th', { scope: 'col' }, t('document')),
            h('th', { scope: 'col' }, t('question')),
            h('th', { scope: 'col' }, t('teacher answer')),
          ),
        ),
        h(
          'tbody',
          {},
          ...job.samples
            .slice(-30)
            .reverse()
            .map((q) =>
              h('tr', {}, h('td', { class: 'muted' }, q.source), h('td', {}, q.question), h('td', {}, q.answer)),
            ),
        ),
      ),
    );
  }
  if (job.log.length)
    card.append(
      h('details', { class: 'log' }, h('summary', {}, t('Log')), h('pre', {}, job.log.slice(-30).join('\n'))),
    );
  return card;
}

function render(): void {
  vscode.setState(state);
  const jobs = [...state.jobs].reverse();
  morphChildren(
    app,
    h(
      'div',
      {},
      h('h1', {}, 'DocDistill'),
      h(
        'p',
        { class: 'muted' },
        state.model
          ? t(
              'Base model: {0} · {1} · {2} M parameters · {3}/{4}',
              state.model.dir.split(/[\\/]/).pop() ?? '',
              state.model.architecture,
              (state.model.parameters / 1e6).toFixed(1),
              state.model.provider,
              state.model.dtype,
            )
          : t('The worker starts with the first job.'),
      ),
      h(
        'div',
        { class: 'row' },
        h(
          'vscode-button',
          { onclick: () => send({ type: 'command', command: 'distillDocs' }) },
          t('Distill Docs Folder'),
        ),
        h(
          'vscode-button',
          { appearance: 'secondary', onclick: () => send({ type: 'command', command: 'chat' }) },
          t('Chat'),
        ),
        h(
          'vscode-button',
          { appearance: 'secondary', onclick: () => send({ type: 'command', command: 'selectModel' }) },
          t('Select Base Model'),
        ),
        h(
          'vscode-button',
          { appearance: 'secondary', onclick: () => send({ type: 'command', command: 'manageAdapters' }) },
          t('Manage Adapters'),
        ),
      ),
      h('h2', {}, t('Adapters')),
      state.adapters.length
        ? h(
            'table',
            { class: 'adapters' },
            h('caption', {}, t('Adapters in this workspace')),
            h(
              'thead',
              {},
              h(
                'tr',
                {},
                h('th', { scope: 'col' }, t('name')),
                h('th', { scope: 'col' }, t('docs')),
                h('th', { scope: 'col' }, t('passages')),
                h('th', { scope: 'col' }, t('status')),
              ),
            ),
            h(
              'tbody',
              {},
              ...state.adapters.map((a) =>
                h(
                  'tr',
                  {},
                  h('td', {}, a.active ? t('{0} (active)', a.name) : a.name),
                  h('td', {}, a.sources.join(', ')),
                  h('td', { class: 'num' }, String(a.chunks)),
                  h(
                    'td',
                    { class: a.stale ? 'stale' : '' },
                    a.stale ? t('stale: {0} changed, {1} removed', a.changed, a.removed) : t('up to date'),
                  ),
                ),
              ),
            ),
          )
        : h('p', { class: 'muted' }, t('No adapters yet.')),
      h('h2', {}, t('Runs')),
      jobs.length
        ? h('div', {}, ...jobs.map((j, k) => jobCard(j, k === 0)))
        : h(
            'p',
            { class: 'muted' },
            t('Right-click Markdown files or folders in the Explorer and choose "{0}".', t('Distill into Model')),
          ),
    ),
  );
}

let pending = false;
const schedule = () => {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => {
    pending = false;
    render();
  });
};

function apply(jobId: string, e: JobEvent): void {
  const job = state.jobs.find((j) => j.jobId === jobId);
  if (!job) return;
  applyJobEvent(job, e);
  schedule();
}

window.addEventListener('message', (ev: MessageEvent<ToDashboard>) => {
  const m = ev.data;
  if (m.type === 'state') {
    state = m.state;
    schedule();
  } else if (m.type === 'jobEvent') apply(m.jobId, m.event);
  else if (m.type === 'reveal') {
    render(); // the card of a job that just started may not be drawn yet
    const card = app.querySelector<HTMLElement>(`.job[data-key="${CSS.escape(m.jobId)}"]`);
    card?.scrollIntoView({ block: 'start' });
    card?.focus();
  }
});
let lastWidth = 0;
new ResizeObserver(() => {
  if (Math.abs(app.clientWidth - lastWidth) > 20) {
    lastWidth = app.clientWidth;
    schedule();
  }
}).observe(app);
render();
send({ type: 'ready' });
