(function(){
  const study = document.body.dataset.study;
  const store = 'humaneval-' + study;
  const fields = () => Array.from(document.querySelectorAll('input[name]'));
  function answers(){
    const out = {};
    for (const el of fields()){
      if (el.type === 'radio' && el.checked) out[el.name] = el.value;
      if (el.type === 'text' && el.value.trim()) out[el.name] = el.value.trim();
    }
    return out;
  }
  function save(){
    try { localStorage.setItem(store, JSON.stringify({rater: document.getElementById('rater').value, answers: answers()})); }
    catch (e) {}
  }
  function restore(){
    let saved = null;
    try { saved = JSON.parse(localStorage.getItem(store) || 'null'); } catch (e) {}
    if (!saved) return;
    document.getElementById('rater').value = saved.rater || '';
    for (const el of fields()){
      const v = (saved.answers || {})[el.name];
      if (v === undefined) continue;
      if (el.type === 'radio') el.checked = el.value === v; else el.value = v;
    }
  }
  function field(s){ s = String(s); return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s; }
  function toCsv(rater, a){
    const rows = ['rater,question,answer'];
    for (const q of Object.keys(a).sort()) rows.push([rater, q, a[q]].map(field).join(','));
    return rows.join('\r\n') + '\r\n';
  }
  document.addEventListener('input', save);
  document.addEventListener('change', save);
  document.getElementById('export').addEventListener('click', function(){
    const status = document.getElementById('status');
    const rater = document.getElementById('rater').value.trim();
    if (!rater){ status.textContent = 'Enter your participant id first.'; document.getElementById('rater').focus(); return; }
    const a = answers();
    const total = document.querySelectorAll('section.question').length;
    const missing = total - Object.keys(a).length;
    const blob = new Blob([toCsv(rater, a)], {type: 'text/csv'});
    const link = document.createElement('a');
    link.href = URL.createObjectURL(blob);
    link.download = 'answers-' + rater.replace(/[^A-Za-z0-9_-]+/g, '_') + '-' + study + '.csv';
    document.body.appendChild(link); link.click(); link.remove();
    status.textContent = 'Exported ' + Object.keys(a).length + ' answer(s)' + (missing ? '; ' + missing + ' question(s) unanswered.' : '.');
  });
  restore();
})();
